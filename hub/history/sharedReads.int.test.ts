import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createRedisHistory } from './redisHistory.ts';
import { shareReads } from './sharedReads.ts';
import type { HistoryStore } from './history.ts';
import { testOrg } from '../testing/hubProcess.ts';
import { createLogger } from '../log.ts';

/** Shared history reads against the real Redis adapter: joined only while not yet sent. */
describe('history - shared reads', () => {
  const prefix = `test:history-shared:${testOrg('h')}:`;
  const r = { size: 100, ttlMs: 60_000 };
  let raw: HistoryStore;
  let store: ReturnType<typeof shareReads>;

  before(() => {
    raw = createRedisHistory({ url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', prefix, log: createLogger('silent'), maxTopicsPerOrg: 100 });
    store = shareReads(raw);
  });
  after(async () => {
    await store.close();
  });

  const append = (org: string, topic: string, i: number) => store.append(org, topic, { payload: Buffer.from(JSON.stringify({ i })), contentType: 'json', ts: Date.now() }, r);

  it('should give identical reads asked for in one turn one store read, and never join a read already sent', async () => {
    const org = testOrg();
    for (let i = 1; i <= 5; i++) await append(org, 'chat/a', i);
    const before = { ...store.stats };
    const reads = await Promise.all(Array.from({ length: 20 }, () => store.read(org, 'chat/a', 2, 100, r)));
    assert.deepEqual([store.stats.reads - before.reads, store.stats.shared - before.shared], [1, 19]);
    assert.ok(reads.every((x) => x === reads[0]), 'every joiner gets the one result');
    assert.deepEqual(reads[0].messages.map((m) => m.offset), [3, 4, 5]);

    // Positive control: a different position in the same turn is its own read
    const [x, y] = await Promise.all([store.read(org, 'chat/a', 2, 100, r), store.read(org, 'chat/a', 4, 100, r)]);
    assert.deepEqual([x.messages.length, y.messages.length], [3, 1]);
    assert.equal(store.stats.reads - before.reads, 3);

    // A read asked for after one was sent is not joined to it: it sees what was appended meanwhile
    const first = store.read(org, 'chat/a', 2, 100, r);
    await new Promise((res) => setImmediate(res)); // the first read is sent now
    await append(org, 'chat/a', 6);
    const second = store.read(org, 'chat/a', 2, 100, r);
    const [a, b] = await Promise.all([first, second]);
    assert.notEqual(a, b);
    assert.deepEqual(b.messages.map((m) => m.offset), [3, 4, 5, 6]);
  });

  it('should pass an error of the shared read to every joiner', async () => {
    const broken = shareReads({ ...raw, read: async () => { throw new Error('store down'); } });
    const results = await Promise.allSettled([broken.read('o', 't', 0, 10, r), broken.read('o', 't', 0, 10, r)]);
    assert.deepEqual(results.map((x) => x.status === 'rejected' && (x.reason as Error).message), ['store down', 'store down']);
    assert.equal(broken.stats.reads, 1);
  });
});
