/**
 * One behaviour suite for every SessionStore adapter: the memory one (sessionStoreMemory.test.ts)
 * and the Redis one (sessionStoreRedis.int.test.ts). Each test uses its own random org.
 */
import { after, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { SessionRef, SessionStore } from './sessionStore.ts';

const ref = (org = `org-${randomBytes(5).toString('hex')}`): SessionRef => ({ org, key: randomBytes(32).toString('base64url') });
const opts = { clean: false, clientId: 'c1', expiryMs: 60_000, maxSessions: 10 };
const b = (s: string) => Buffer.from(s);
const strings = (l: Buffer[]) => l.map((x) => x.toString());

/** `create` may connect asynchronously; every store made is closed after the suite, pass or fail. */
export function sessionStoreConformance(create: () => Promise<SessionStore>): void {
  const made: SessionStore[] = [];
  const make = async () => {
    const s = await create();
    made.push(s);
    return s;
  };
  after(() => Promise.all(made.map((s) => s.close())));

  it('session store - claim creates a session (present false), a second claim finds it (present true) with its state', async () => {
    const s = await make();
    const r = ref();
    const first = await s.claim(r, 'live:n:1', opts);
    assert.ok(typeof first === 'object');
    assert.equal(first.present, false);
    await s.setSubscriptions(r, 'live:n:1', { 'a/#': 1 });
    assert.equal(await s.park(r, 'live:n:1', 'queue:n:1', { subs: { 'a/#': 1, 'b': 0 }, qos2: [7], pending: [b('m1')], expiryMs: 60_000, maxQueue: 10 }), true);
    assert.deepEqual(await s.append(r, 'queue:n:1', [b('m2'), b('m3')], 10), { length: 3, dropped: 0 });
    const again = await s.claim(r, 'live:n:2', opts);
    assert.ok(typeof again === 'object');
    assert.equal(again.present, true);
    assert.deepEqual(again.session.subs, { 'a/#': 1, b: 0 });
    assert.deepEqual(again.session.qos2, [7]);
    assert.deepEqual(strings(again.messages), ['m1', 'm2', 'm3'], 'parked pending first, then appended, oldest first');
    const third = await s.claim(r, 'live:n:3', opts);
    assert.ok(typeof third === 'object');
    assert.deepEqual(third.messages, [], 'claiming takes the queue');
  });

  it('session store - only the owner writes: a former owner cannot park or append', async () => {
    const s = await make();
    const r = ref();
    await s.claim(r, 'live:n:1', opts);
    await s.claim(r, 'live:n:2', opts);
    assert.equal(await s.park(r, 'live:n:1', 'queue:n:1', { subs: {}, qos2: [], pending: [b('x')], expiryMs: 60_000, maxQueue: 10 }), false);
    assert.equal(await s.append(r, 'queue:n:1', [b('y')], 10), undefined);
    // positive control: the owner can
    assert.equal(await s.park(r, 'live:n:2', 'queue:n:2', { subs: {}, qos2: [], pending: [], expiryMs: 60_000, maxQueue: 10 }), true);
    assert.deepEqual(await s.append(r, 'queue:n:2', [b('z')], 10), { length: 1, dropped: 0 });
  });

  it('session store - a claim unlessLive answers busy while another live connection holds the session, and claims once it is parked', async () => {
    const s = await make();
    const r = ref();
    await s.claim(r, 'live:n:1', opts);
    assert.equal(await s.claim(r, 'live:n:2', { ...opts, unlessLive: true }), 'busy');
    assert.equal((await s.peek(r))?.owner, 'live:n:1', 'nothing changed');
    // positive controls: its own holder, and anyone once a queue holds it
    assert.notEqual(await s.claim(r, 'live:n:1', { ...opts, unlessLive: true }), 'busy');
    await s.park(r, 'live:n:1', 'queue:n:1', { subs: {}, qos2: [], pending: [b('p')], expiryMs: 60_000, maxQueue: 10 });
    const c = await s.claim(r, 'live:n:2', { ...opts, unlessLive: true });
    assert.ok(c !== 'busy' && c !== 'full');
    assert.deepEqual(strings(c.messages), ['p']);
  });

  it('session store - a session parked on a node that stopped beating is adopted once by another node; one on a beating node, or resumed meanwhile, is not', async () => {
    const s = await make();
    const [orphan, kept, resumed] = [ref(), ref(), ref()];
    const dead = `dead-${randomBytes(4).toString('hex')}`;
    const beating = `beat-${randomBytes(4).toString('hex')}`;
    const me = `me-${randomBytes(4).toString('hex')}`;
    for (const [r, node] of [[orphan, dead], [kept, beating], [resumed, dead]] as const) {
      await s.claim(r, 'live:x:1', opts);
      await s.park(r, 'live:x:1', `queue:${node}:1`, { queueNode: node, subs: { 'a/#': 1 }, qos2: [], pending: [b('p')], expiryMs: 60_000, maxQueue: 10 });
    }
    await s.heartbeat(beating);
    await s.retire(dead);
    await s.claim(resumed, 'live:y:2', opts);
    await s.heartbeat(me);
    let n = 0;
    const adopted = (await s.adoptOrphans(me, () => `queue:${me}:${++n}`, 100_000)).filter((a) => [orphan, kept, resumed].some((r) => r.key === a.ref.key));
    assert.deepEqual(adopted.map((a) => [a.ref.key, a.subs]), [[orphan.key, { 'a/#': 1 }]]);
    assert.ok(adopted[0].expiryMs > 50_000 && adopted[0].expiryMs <= 60_000);
    // the adopter owns it now: the dead queue can no longer append, the new one can
    assert.equal(await s.append(orphan, `queue:${dead}:1`, [b('late')], 10), undefined);
    assert.deepEqual(await s.append(orphan, adopted[0].owner, [b('q')], 10), { length: 2, dropped: 0 });
    assert.deepEqual(await s.append(kept, `queue:${beating}:1`, [b('k')], 10), { length: 2, dropped: 0 }, 'the beating node keeps its queue');
    assert.deepEqual((await s.adoptOrphans(`other-${me}`, () => 'queue:o:1', 100_000)).filter((a) => a.ref.key === orphan.key), [], 'adopted once');
    const c = await s.claim(orphan, 'live:z:3', opts);
    assert.ok(typeof c === 'object');
    assert.deepEqual(strings(c.messages), ['p', 'q']);
  });

  it('session store - a node that retired stays dead: the sessions it parks afterwards are adopted at once, and a late beat does not revive it', async () => {
    const s = await make();
    const [early, late] = [ref(), ref()];
    const stopping = `stopping-${randomBytes(4).toString('hex')}`;
    const me = `me-${randomBytes(4).toString('hex')}`;
    // Given a beating node with a parked session (control: not adoptable while it beats)
    await s.heartbeat(stopping);
    await s.claim(early, 'live:s:1', opts);
    await s.park(early, 'live:s:1', `queue:${stopping}:1`, { queueNode: stopping, subs: { 'a/#': 1 }, qos2: [], pending: [], expiryMs: 60_000, maxQueue: 10 });
    await s.claim(late, 'live:s:2', opts);
    const mine = (a: { ref: SessionRef }[]) => a.filter((x) => x.ref.key === early.key || x.ref.key === late.key).map((x) => x.ref.key).sort();
    await s.heartbeat(me);
    assert.deepEqual(mine(await s.adoptOrphans(me, () => `queue:${me}:0`, 100_000)), [], 'a beating node keeps its sessions');
    // When it retires, then parks one more session on its way down and a beat still in flight lands
    await s.retire(stopping);
    await s.park(late, 'live:s:2', `queue:${stopping}:2`, { queueNode: stopping, subs: { 'b/#': 1 }, qos2: [], pending: [], expiryMs: 60_000, maxQueue: 10 });
    await s.heartbeat(stopping);
    // Then another node adopts both at its next look, without waiting NODE_ALIVE_MS
    let n = 0;
    assert.deepEqual(mine(await s.adoptOrphans(me, () => `queue:${me}:${++n}`, 100_000)), [early.key, late.key].sort());
  });

  it('session store - a full queue drops the oldest and counts it', async () => {
    const s = await make();
    const r = ref();
    await s.claim(r, 'live:n:1', opts);
    await s.park(r, 'live:n:1', 'q', { subs: {}, qos2: [], pending: [], expiryMs: 60_000, maxQueue: 3 });
    assert.deepEqual(await s.append(r, 'q', [b('1'), b('2'), b('3'), b('4'), b('5')], 3), { length: 3, dropped: 2 });
    const [info] = await s.list(r.org, 10);
    assert.equal(info.queued, 3);
    assert.equal(info.dropped, 2);
    const c = await s.claim(r, 'live:n:2', opts);
    assert.ok(typeof c === 'object');
    assert.deepEqual(strings(c.messages), ['3', '4', '5']);
    assert.equal(c.session.drops, 2);
  });

  it('session store - clean claim discards, discard removes; an org holds at most maxSessions; other orgs are separate', async () => {
    const s = await make();
    const org = `org-${randomBytes(5).toString('hex')}`;
    const r1 = ref(org);
    await s.claim(r1, 'live:n:1', opts);
    await s.park(r1, 'live:n:1', 'q', { subs: { t: 1 }, qos2: [], pending: [b('old')], expiryMs: 60_000, maxQueue: 10 });
    const clean = await s.claim(r1, 'live:n:2', { ...opts, clean: true });
    assert.ok(typeof clean === 'object');
    assert.equal(clean.present, false);
    assert.deepEqual(clean.messages, []);
    assert.deepEqual(clean.session.subs, {});
    const r2 = ref(org);
    assert.notEqual(await s.claim(r2, 'live:n:3', { ...opts, maxSessions: 2 }), 'full');
    assert.equal(await s.claim(ref(org), 'live:n:4', { ...opts, maxSessions: 2 }), 'full');
    assert.notEqual(await s.claim(r1, 'live:n:5', { ...opts, maxSessions: 2 }), 'full', 'an existing session is not counted twice');
    assert.notEqual(await s.claim(ref(), 'live:n:6', { ...opts, maxSessions: 2 }), 'full', 'another org has its own bound');
    await s.discard(r2);
    assert.equal(await s.peek(r2), undefined);
    assert.deepEqual((await s.list(org, 10)).map((i) => i.connected), [true]);
  });

  it('session store - the same key in another org is another session', async () => {
    const s = await make();
    const a = ref();
    const bRef = { org: `org-${randomBytes(5).toString('hex')}`, key: a.key };
    await s.claim(a, 'live:n:1', opts);
    await s.park(a, 'live:n:1', 'q', { subs: { secret: 1 }, qos2: [], pending: [b('for A')], expiryMs: 60_000, maxQueue: 10 });
    const other = await s.claim(bRef, 'live:n:2', opts);
    assert.ok(typeof other === 'object');
    assert.equal(other.present, false);
    assert.deepEqual(other.messages, []);
    assert.equal((await s.list(bRef.org, 10)).length, 1);
    // positive control: org A still has its session and message
    const mine = await s.claim(a, 'live:n:3', opts);
    assert.ok(typeof mine === 'object');
    assert.equal(mine.present, true);
    assert.deepEqual(strings(mine.messages), ['for A']);
  });

  it('session store - a parked session expires after its expiry', async () => {
    const s = await make();
    const r = ref();
    await s.claim(r, 'live:n:1', opts);
    await s.park(r, 'live:n:1', 'q', { subs: { t: 1 }, qos2: [], pending: [b('m')], expiryMs: 150, maxQueue: 10 });
    assert.ok(await s.peek(r));
    const deadline = Date.now() + 5000;
    while ((await s.peek(r)) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 25));
    assert.equal(await s.peek(r), undefined);
    assert.deepEqual(await s.list(r.org, 10), []);
    const c = await s.claim(r, 'live:n:2', opts);
    assert.ok(typeof c === 'object');
    assert.equal(c.present, false);
  });
}
