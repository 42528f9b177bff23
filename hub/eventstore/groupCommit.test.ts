import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createGroupCommit } from './groupCommit.ts';

interface Item {
  id: number;
  org: string;
  key?: string;
}

const tick = () => new Promise((r) => setTimeout(r, 5));

/** A group commit whose flush records each batch and completes only when the test says so. */
function harness(concurrency: number, extra: { splitMin?: number; maxBatch?: number; maxQueue?: number; maxQueuePerKey?: number; weightOf?: (org: string) => number; settleSlice?: number; windowPerKey?: number } = {}) {
  const batches: Item[][] = [];
  const finish: Array<() => void> = [];
  const gc = createGroupCommit<Item, number>({
    windowMs: 0,
    maxBatch: extra.maxBatch ?? 100,
    concurrency,
    flush: (items) => {
      batches.push(items);
      return new Promise((resolve) => finish.push(() => resolve(items.map((i) => i.id))));
    },
    conflictKeys: (i) => (i.key ? [i.key] : []),
    partitionKey: (i) => i.org,
    splitMin: extra.splitMin,
    maxQueue: extra.maxQueue,
    maxQueuePerKey: extra.maxQueuePerKey,
    weightOf: extra.weightOf,
    settleSlice: extra.settleSlice,
    windowPerKey: extra.windowPerKey,
    overloaded: (scope, key) => Object.assign(new Error(`overloaded ${scope} ${key}`), { scope }),
  });
  const ids = () => batches.map((b) => b.map((i) => i.id));
  return { gc, finish, ids };
}

describe('group commit', () => {
  it('group commit - what queues while every slot is busy leaves as one batch when a slot frees', async () => {
    const { gc, finish, ids } = harness(1);
    const all = [gc.submit({ id: 1, org: 'a' })];
    await tick();
    all.push(gc.submit({ id: 2, org: 'a' }), gc.submit({ id: 3, org: 'b' }), gc.submit({ id: 4, org: 'a' }));
    await tick();
    assert.deepEqual(ids(), [[1]]);
    finish[0]();
    await tick();
    assert.deepEqual(ids(), [[1], [2, 3, 4]]);
    finish[1]();
    assert.deepEqual(await Promise.all(all), [1, 2, 3, 4]);
    assert.equal(gc.pending, 0);
  });

  it('group commit - requests with the same conflict key never share a batch, and the later one keeps its place', async () => {
    const { gc, finish, ids } = harness(1);
    const all = [gc.submit({ id: 1, org: 'a', key: 'k' }), gc.submit({ id: 2, org: 'a', key: 'k' }), gc.submit({ id: 3, org: 'a' })];
    await tick();
    assert.deepEqual(ids(), [[1, 3]]);
    finish[0]();
    await tick();
    assert.deepEqual(ids(), [[1, 3], [2]]);
    finish[1]();
    assert.deepEqual(await Promise.all(all), [1, 2, 3]);
  });

  it('group commit - a long queue is split over idle slots by partition, each partition whole and in order', async () => {
    const { gc, finish, ids } = harness(3, { splitMin: 2 });
    const all = [gc.submit({ id: 0, org: 'x' })];
    await tick();
    // slot 1 busy; 8 requests of 3 orgs queue up, then the window flushes them over the 2 free slots
    for (let i = 1; i <= 8; i++) all.push(gc.submit({ id: i, org: ['a', 'b', 'c'][i % 3] }));
    finish[0]();
    await tick();
    const split = ids().slice(1);
    assert.ok(split.length >= 2, `split into ${split.length} batches`);
    const orgOf = (id: number) => ['a', 'b', 'c'][id % 3];
    for (const org of ['a', 'b', 'c']) {
      const holders = split.filter((b) => b.some((id) => orgOf(id) === org));
      assert.equal(holders.length, 1, `org ${org} in one batch`);
      const mine = holders[0].filter((id) => orgOf(id) === org);
      assert.deepEqual(mine, [...mine].sort((p, q) => p - q), `org ${org} in arrival order`);
    }
    assert.deepEqual(split.flat().sort((p, q) => p - q), [1, 2, 3, 4, 5, 6, 7, 8]);
    for (const f of finish.slice(1)) f();
    await Promise.all(all);
  });

  it('group commit - a failed flush rejects its own batch only', async () => {
    let calls = 0;
    const gc = createGroupCommit<Item, number>({
      windowMs: 0,
      maxBatch: 100,
      concurrency: 2,
      flush: async (items) => {
        if (calls++ === 0) throw new Error('boom');
        return items.map((i) => (i.id === 3 ? new Error('only 3 failed') : i.id));
      },
    });
    await assert.rejects(gc.submit({ id: 1, org: 'a' }), /boom/);
    const [two, three] = await Promise.allSettled([gc.submit({ id: 2, org: 'a' }), gc.submit({ id: 3, org: 'a' })]);
    assert.deepEqual(two, { status: 'fulfilled', value: 2 });
    assert.equal(three.status, 'rejected');
    assert.match(String((three as PromiseRejectedResult).reason), /only 3 failed/);
    await gc.drain();
    assert.equal(gc.pending, 0);
    assert.deepEqual({ ...gc.totals }, { items: 3, batches: 2, failedBatches: 1, overloaded: 0 });
  });

  it('group commit - a batch is filled round-robin across orgs: a flooding org cannot push another org out of it', async () => {
    // Given one slot busy and 300 requests of org a queued before 3 of org b
    const { gc, finish, ids } = harness(1, { maxBatch: 10 });
    const all = [gc.submit({ id: 0, org: 'x' })];
    await tick();
    for (let i = 1; i <= 300; i++) all.push(gc.submit({ id: i, org: 'a' }));
    for (let i = 1001; i <= 1003; i++) all.push(gc.submit({ id: i, org: 'b' }));
    // When the slot frees
    finish[0]();
    await tick();
    // Then the next batch of 10 holds all of b's requests and 7 of a's, in arrival order
    assert.deepEqual(ids()[1], [1, 2, 3, 4, 5, 6, 7, 1001, 1002, 1003]);
    while (finish.length < ids().length || ids().flat().length < 304) {
      finish[finish.length - 1]();
      await tick();
    }
    for (const f of finish) f();
    assert.equal((await Promise.all(all)).length, 304);
  });

  it('group commit - shares are weighted by tier: an enterprise org (4) gets 4 places for a free org\'s (1) 1, and the free org is never left out', async () => {
    // Given one slot busy and 300 requests each of an enterprise org and a free org queued
    const tiers: Record<string, number> = { ent: 4, free: 1 };
    const { gc, finish, ids } = harness(1, { maxBatch: 50, weightOf: (org) => tiers[org] ?? 1 });
    const all = [gc.submit({ id: 0, org: 'x' })];
    await tick();
    for (let i = 1; i <= 300; i++) all.push(gc.submit({ id: i, org: 'ent' }), gc.submit({ id: 1000 + i, org: 'free' }));
    // When the slot frees
    finish[0]();
    await tick();
    // Then each full batch holds 40 of the enterprise org's and 10 of the free org's, each in order
    const second = ids()[1];
    assert.deepEqual(second.filter((id) => id < 1000), Array.from({ length: 40 }, (_, i) => i + 1));
    assert.deepEqual(second.filter((id) => id > 1000), Array.from({ length: 10 }, (_, i) => 1001 + i));
    // and once the enterprise queue is empty the free org gets whole batches
    while (ids().flat().length < 601) {
      finish[finish.length - 1]();
      await tick();
    }
    for (const f of finish) f();
    assert.equal((await Promise.all(all)).length, 601);
    assert.ok(ids().at(-1)!.every((id) => id > 1000), 'the last batch is the free org\'s rest');
  });

  it('group commit - one org may hold at most concurrency - 1 slots, so a late org gets a free slot at once', async () => {
    // Given 3 slots and a flood of org a that fills two of them
    const { gc, finish, ids } = harness(3, { maxBatch: 5, splitMin: 1000 });
    const all: Promise<number>[] = [];
    for (let i = 1; i <= 40; i++) all.push(gc.submit({ id: i, org: 'a' }));
    await tick();
    assert.equal(ids().length, 2, 'a holds 2 of 3 slots, not all 3');
    // When org b submits
    all.push(gc.submit({ id: 100, org: 'b' }));
    await tick();
    // Then b's request leaves at once in the third slot, alone
    assert.deepEqual(ids()[2], [100]);
    while (ids().flat().length < 41 || finish.some(Boolean)) {
      const f = finish.shift();
      if (!f) break;
      f();
      await tick();
    }
    assert.equal((await Promise.all(all)).length, 41);
  });

  it('group commit - past maxQueuePerKey an org gets overloaded while another org is still queued; past maxQueue everyone is', async () => {
    const { gc, finish } = harness(1, { maxQueue: 6, maxQueuePerKey: 3 });
    const first = gc.submit({ id: 0, org: 'x' });
    await tick(); // id 0 in flight, the queue is empty
    const ok = [1, 2, 3].map((id) => gc.submit({ id, org: 'a' }));
    await assert.rejects(gc.submit({ id: 4, org: 'a' }), (e: any) => e.scope === 'key' && /overloaded key a/.test(e.message));
    // positive control: b still gets in
    const b = [5, 6, 7].map((id) => gc.submit({ id, org: 'b' }));
    await assert.rejects(gc.submit({ id: 8, org: 'c' }), (e: any) => e.scope === 'queue');
    assert.equal(gc.totals.overloaded, 2);
    finish[0]();
    await tick();
    finish[1]();
    assert.deepEqual(await Promise.all([first, ...ok, ...b]), [0, 1, 2, 3, 5, 6, 7]);
  });

  it('group commit - org window: alone an org fills whole batches; once another org submits, it has at most its window in flight', async () => {
    const { gc, finish, ids } = harness(4, { windowPerKey: 10 });
    const all: Promise<number>[] = [];
    // Given org a alone with 100 requests: one batch of all 100 (no window applies)
    for (let i = 0; i < 100; i++) all.push(gc.submit({ id: i, org: 'a' }));
    await tick();
    assert.equal(ids()[0].length, 100);
    // When org b submits, and a submits 50 more while its 100 are in flight
    all.push(gc.submit({ id: 1000, org: 'b' }));
    for (let i = 100; i < 150; i++) all.push(gc.submit({ id: i, org: 'a' }));
    await tick();
    // Then b's request leaves alone at once, and none of a's new ones (a is over its window)
    assert.deepEqual(ids()[1], [1000]);
    assert.equal(ids().length, 2);
    // And once a's big batch is done, a's batches hold at most 10 of its requests, one window at a time
    const inFlightOfA = () => ids().slice(ids().length - finish.length).flat().filter((id) => id < 1000).length;
    finish.shift()!();
    await tick();
    const later: number[][] = [];
    while (finish.length) {
      assert.ok(inFlightOfA() <= 10, `a has ${inFlightOfA()} in flight`);
      finish.shift()!();
      await tick();
    }
    for (const b of ids().slice(2)) later.push(b);
    assert.ok(later.length >= 5, `a's 50 left in ${later.length} batches`);
    for (const b of later) assert.ok(b.length <= 10, `a batch of ${b.length} while b was active`);
    // positive control: every request was answered
    assert.equal((await Promise.all(all)).length, 151);
  });

  it('group commit - ack slices: a flushed batch answers settleSlice callers per loop turn, the light org first', async () => {
    const { gc, finish } = harness(1, { settleSlice: 2 });
    const answered: number[] = [];
    const all: Promise<unknown>[] = [];
    // Given one batch holding 5 requests of org a and then 1 of org b
    for (let i = 0; i < 5; i++) all.push(gc.submit({ id: i, org: 'a' }).then((id) => answered.push(id)));
    all.push(gc.submit({ id: 100, org: 'b' }).then((id) => answered.push(id)));
    await tick();
    assert.equal(finish.length, 1);
    // When it is flushed
    finish[0]();
    // Then the first turn answers 2 (b's first), the rest follow in later turns
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(answered, [100, 0]);
    await Promise.all(all);
    assert.deepEqual(answered, [100, 0, 1, 2, 3, 4]);
    // positive control: without slices the same batch is answered in one turn, in batch order
    const whole = harness(1);
    const got: number[] = [];
    const all2 = [0, 1, 2, 3, 4].map((id) => whole.gc.submit({ id, org: 'a' }).then((x) => got.push(x)));
    all2.push(whole.gc.submit({ id: 100, org: 'b' }).then((x) => got.push(x)));
    await tick();
    whole.finish[0]();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(got, [0, 1, 2, 3, 4, 100]);
  });
});
