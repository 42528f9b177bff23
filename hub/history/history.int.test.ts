import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { startHubProcess, testOrg, type HubProcess } from '../testing/hubProcess.ts';
import { TestClient, type Frame } from '../testing/wsClient.ts';

/**
 * History and resume against two real hub processes, the real Redis and NATS. Namespaces:
 * `chat` keeps 20000 messages (the resume storm), `tiny` keeps 5, `brief` lives 1 s.
 */
async function until<T>(fn: () => Promise<T | undefined | false>, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('history', () => {
  let issuer: TestIssuer;
  let node1: HubProcess;
  let node2: HubProcess;
  const clients: TestClient[] = [];

  const ws = async (hub: HubProcess, org: string, sub = 'u1', roles = ['admin']) => {
    const c = await TestClient.connect(hub.wsUrl, await issuer.token(org, sub, roles));
    clients.push(c);
    return c;
  };
  const get = async (hub: HubProcess, org: string, query: string, sub = 'u1', roles = ['admin']) => {
    const r = await fetch(`${hub.url}/v1/history?${query}`, { headers: { authorization: `Bearer ${await issuer.token(org, sub, roles)}` } });
    return { status: r.status, body: (await r.json()) as any };
  };
  /** Publishes `n` messages `{p, i}` with at most `window` unanswered. */
  const publish = async (c: TestClient, topic: string, p: string, n: number, window = 100) => {
    const inflight = new Set<Promise<Frame>>();
    for (let i = 0; i < n; i++) {
      const r = c.request({ op: 'pub', topic, data: { p, i } }, 30_000);
      inflight.add(r);
      r.then((f) => {
        inflight.delete(r);
        if (f.op !== 'ok') throw new Error(`pub refused: ${JSON.stringify(f)}`);
      });
      if (inflight.size >= window) await Promise.race(inflight);
    }
    await Promise.all(inflight);
  };

  before(async () => {
    issuer = await createTestIssuer();
    const env = { ...issuer.env, ORGHUB_EVENT_STORE: 'none', ORGHUB_HISTORY_NAMESPACES: 'chat=20000:600,tiny=5:600,brief=10:1', ORGHUB_MAX_BACKPRESSURE: String(64 * 1024 * 1024) };
    node1 = await startHubProcess(env, { timeoutMs: 45_000 });
    node2 = await startHubProcess(env, { timeoutMs: 45_000 });
  });

  after(async () => {
    for (const c of clients) await c.close();
    await Promise.all([node1?.stop(), node2?.stop()]);
  });

  it('history - 10k messages from two nodes while a client disconnects and resumes at random moments: every message exactly once, in order', async () => {
    const org = testOrg();
    const topic = 'chat/room1';
    const seen: Frame[] = [];
    const total = 10_000;
    // The starting point: the stream's position before anything is published
    const probe = await ws(node2, org, 'reader');
    const start = await probe.request({ op: 'sub', topic });
    assert.deepEqual([start.op, start.offset], ['ok', 0]);
    await probe.close();
    let pos = { offset: start.offset as number, epoch: start.epoch as string };
    let resumes = 0;
    let done = false;
    // The reader: resume from the last offset seen, read a random number of messages, drop the
    // connection, and again, until the publishers are done and it has caught up.
    const readerLoop = (async () => {
      const deadline = Date.now() + 120_000;
      while ((!done || seen.length < total) && Date.now() < deadline) {
        const reader = await ws(resumes % 2 ? node1 : node2, org, 'reader');
        const ok = await reader.request({ op: 'sub', topic, since: pos }, 30_000);
        assert.deepEqual([ok.op, ok.recovered], ['ok', true], `resume ${resumes} from ${JSON.stringify(pos)}: ${JSON.stringify(ok)}`);
        resumes++;
        const want = 200 + Math.floor(Math.random() * 1500);
        const count = () => reader.frames.filter((f) => f.op === 'msg').length;
        await until(async () => count() >= want || (done && seen.length + count() >= total) || undefined, 20_000, 'reader progress').catch(() => undefined);
        await reader.close();
        for (const f of reader.frames) {
          if (f.op !== 'msg') continue;
          seen.push(f);
          pos = { offset: f.offset, epoch: f.epoch };
        }
      }
    })();
    const [p1, p2] = [await ws(node1, org, 'pub1'), await ws(node2, org, 'pub2')];
    await Promise.all([publish(p1, topic, 'a', 5000), publish(p2, topic, 'b', 5000)]);
    done = true;
    await readerLoop;

    assert.ok(resumes >= 3, `only ${resumes} connections`);
    // Exactly once, in offset order, with no gap
    const offsets = seen.map((f) => f.offset);
    assert.equal(offsets.length, 10_000);
    for (let i = 1; i < offsets.length; i++) assert.equal(offsets[i], offsets[i - 1] + 1, `gap or duplicate at ${i}: ${offsets[i - 1]} → ${offsets[i]}`);
    // and each publisher's messages in the order it sent them
    for (const p of ['a', 'b']) {
      const is = seen.filter((f) => f.data.p === p).map((f) => f.data.i);
      assert.deepEqual(is, Array.from({ length: 5000 }, (_, i) => i));
    }
    assert.equal(new Set(seen.map((f) => f.epoch)).size, 1);
  });

  it('history - a resume with another epoch, or from before retention, should be recovered: false with the fresh position and the count missed', async () => {
    const org = testOrg();
    const c = await ws(node1, org);
    await publish(c, 'tiny/t', 'x', 20);
    const first = await c.request({ op: 'sub', topic: 'tiny/t' });
    assert.equal(first.offset, 20);
    assert.equal(first.recovered, undefined, 'a plain sub does not claim a recovery');

    const r2 = await ws(node2, org);
    const stale = await r2.request({ op: 'sub', topic: 'tiny/t', since: { offset: 2, epoch: first.epoch } });
    assert.deepEqual([stale.op, stale.recovered, stale.missed, stale.offset, stale.epoch], ['ok', false, 18, 20, first.epoch]);
    const other = await (await ws(node2, org)).request({ op: 'sub', topic: 'tiny/t', since: { offset: 18, epoch: 'not-the-epoch' } });
    assert.deepEqual([other.recovered, other.offset], [false, 20]);
    // Positive control: within retention, the missed messages come after the ok, in order
    const fresh = await ws(node2, org);
    const okr = await fresh.request({ op: 'sub', topic: 'tiny/t', since: { offset: 16, epoch: first.epoch } });
    assert.deepEqual([okr.recovered, okr.missed, okr.offset], [true, 4, 20]);
    await until(async () => fresh.messages('tiny/t').length >= 4 || undefined, 5000, 'recovered messages');
    assert.deepEqual(fresh.messages('tiny/t').map((f) => [f.offset, f.data.i]), [[17, 16], [18, 17], [19, 18], [20, 19]]);
    assert.ok(fresh.frames.findIndex((f) => f.op === 'ok') < fresh.frames.findIndex((f) => f.op === 'msg'), 'ok comes first');

    // A stream that expired (TTL 1 s) comes back with a new epoch
    await publish(c, 'brief/b', 'y', 3);
    const b = await c.request({ op: 'sub', topic: 'brief/b' });
    const after = await until(async () => {
      const h = await get(node2, org, `topic=brief/b&since=${b.offset}&epoch=${b.epoch}`);
      return h.body.recovered === false ? h : undefined;
    }, 10_000, 'epoch change after the TTL');
    assert.notEqual(after.body.epoch, b.epoch);
    assert.equal(after.body.offset, 0);

    // A `since` on a topic without history is refused
    assert.equal((await c.request({ op: 'sub', topic: 'devices/d1/x', since: { offset: 1, epoch: 'e' } })).code, 'invalid');
  });

  it('history - GET /v1/history should serve the same stream over HTTP, only to subscribers granted it and only within the org', async () => {
    const org = testOrg('a');
    const c = await ws(node1, org);
    await publish(c, 'chat/h1', 'z', 3);
    const h = await get(node2, org, 'topic=chat/h1&since=1&limit=10');
    assert.equal(h.status, 200);
    assert.deepEqual(h.body.messages.map((m: any) => [m.offset, m.data.i, m.from]), [[2, 1, 'u1'], [3, 2, 'u1']]);
    assert.equal(h.body.offset, 3);
    const otherOrg = await get(node2, testOrg('b'), 'topic=chat/h1');
    assert.deepEqual([otherOrg.status, otherOrg.body.messages, otherOrg.body.offset], [200, [], 0]);
    const device = await get(node2, org, 'topic=chat/h1', 'd1', ['device']);
    assert.deepEqual([device.status, device.body.error.code], [403, 'forbidden']);
    const none = await get(node2, org, 'topic=devices/d1/x');
    assert.deepEqual([none.status, none.body.error.code], [400, 'invalid']);
    // Every live msg on a history topic carries its offset, also through a wildcard subscription
    const watcher = await ws(node2, org);
    assert.equal((await watcher.request({ op: 'sub', topic: 'chat/+' })).op, 'ok');
    await publish(c, 'chat/h1', 'w', 1);
    const live = await watcher.waitFor((f) => f.op === 'msg' && f.data.p === 'w');
    assert.deepEqual([live.offset, live.epoch], [4, h.body.epoch]);
  });
});
