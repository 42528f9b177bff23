import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { createLogger } from '../log.ts';
import { testOrg } from '../testing/hubProcess.ts';
import type { RetainedMessage, RetainedStore } from './retained.ts';
import { createRedisRetainedStore, encodeRetained, literalPrefix, retainedIndexKey, retainedKey } from './retainedRedis.ts';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const msg = (topic: string, payload = topic): RetainedMessage => ({ topic, payload: Buffer.from(payload), contentType: 'bytes', qos: 1, from: 'u', ts: 1 });
const topicsOf = (list: RetainedMessage[]) => list.map((m) => m.topic).sort();

/** The Redis retained store against a real Redis: the topic index and what a filter reads. */
describe('mqtt retained store (Redis)', () => {
  let store: RetainedStore;
  let redis: Redis;

  before(async () => {
    store = createRedisRetainedStore(REDIS_URL, createLogger('silent'), 50);
    redis = new Redis(REDIS_URL);
    // the store fails fast instead of queueing: wait until it is connected
    for (let i = 0; !(await store.ping()); i++) {
      if (i > 100) throw new Error(`Redis at ${REDIS_URL} not ready`);
      await new Promise((r) => setTimeout(r, 50));
    }
  });
  after(async () => {
    await store.close();
    redis.disconnect();
  });

  it('literal prefix - the part of a filter before its first wildcard segment', () => {
    assert.equal(literalPrefix('devices/d1/#'), 'devices/d1/');
    assert.equal(literalPrefix('a/+/b'), 'a/');
    assert.equal(literalPrefix('a/b/+'), 'a/b/');
    assert.equal(literalPrefix('#'), '');
    assert.equal(literalPrefix('+/x'), '');
  });

  it('match - a filter gets exactly its topics, from its own org only, and # never reaches $ topics', async () => {
    const org = testOrg();
    const other = testOrg();
    const topics = ['devices/d1/state', 'devices/d1/cfg/a', 'devices/d10/state', 'devices/d2/state', 'devices', 'rooms/r1/devices/d1', '$sys/x'];
    for (const t of topics) assert.equal(await store.set(org, msg(t)), true);
    await store.set(other, msg('devices/d1/state', 'OTHER ORG'));

    assert.deepEqual(topicsOf(await store.match(org, 'devices/d1/#')), ['devices/d1/cfg/a', 'devices/d1/state']);
    assert.deepEqual(topicsOf(await store.match(org, 'devices/+/state')), ['devices/d1/state', 'devices/d10/state', 'devices/d2/state']);
    assert.deepEqual(topicsOf(await store.match(org, '+/+/devices/+')), ['rooms/r1/devices/d1']);
    assert.deepEqual(topicsOf(await store.match(org, '#')), topics.filter((t) => !t.startsWith('$')).sort());
    assert.deepEqual(topicsOf(await store.match(org, '$sys/#')), ['$sys/x']);
    const [exact] = await store.match(org, 'devices/d1/state');
    assert.equal(exact.payload.toString(), 'devices/d1/state', 'its own org\'s payload, not the other org\'s');
    assert.deepEqual(await store.match(org, 'devices/d3/state'), []);
    assert.deepEqual(topicsOf(await store.match(other, '#')), ['devices/d1/state']);
  });

  it('index - mirrors the hash through stores, replacements and deletes', async () => {
    const org = testOrg();
    for (const t of ['a/1', 'a/2', 'b/1']) await store.set(org, msg(t));
    await store.set(org, msg('a/1', 'again'));
    await store.set(org, msg('a/2', ''));
    assert.deepEqual((await redis.hkeys(retainedKey(org))).sort(), ['a/1', 'b/1']);
    assert.deepEqual(await redis.zrange(retainedIndexKey(org), '0', '-1'), ['a/1', 'b/1']);
    assert.deepEqual(topicsOf(await store.match(org, 'a/+')), ['a/1']);
    await store.set(org, msg('a/1', ''));
    await store.set(org, msg('b/1', ''));
    assert.equal(await redis.exists(retainedKey(org), retainedIndexKey(org)), 0, 'nothing left behind');
  });

  it('index - an org stored before the index existed is indexed on first use, and the cap still holds', async () => {
    const org = testOrg();
    // as an earlier release wrote it: the hash alone
    await redis.hset(retainedKey(org), 'old/1', encodeRetained(msg('old/1')), 'old/2', encodeRetained(msg('old/2')));
    assert.deepEqual(topicsOf(await store.match(org, 'old/#')), ['old/1', 'old/2']);
    assert.deepEqual(await redis.zrange(retainedIndexKey(org), '0', '-1'), ['old/1', 'old/2']);
    for (let i = 0; i < 48; i++) assert.equal(await store.set(org, msg(`new/${i}`)), true);
    assert.equal(await store.set(org, msg('new/over')), false, 'the 51st topic is refused (cap 50)');
    assert.equal(await store.set(org, msg('old/1', 'replaced')), true, 'replacing at the cap is allowed');
    assert.equal(await redis.zcard(retainedIndexKey(org)), 50);
    await redis.del(retainedKey(org), retainedIndexKey(org));
  });
});
