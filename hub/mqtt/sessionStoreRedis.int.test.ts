import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { createLogger } from '../log.ts';
import { sessionStoreConformance } from './sessionStoreConformance.ts';
import type { SessionStore } from './sessionStore.ts';
import { createRedisSessionStore, queueKey, sessionIndexKey, sessionKey } from './sessionStoreRedis.ts';

const url = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const log = createLogger('silent');

/** A store whose connection is up (commands fail fast while it is not: no offline queue). */
async function connected(): Promise<SessionStore> {
  const s = createRedisSessionStore(url, log, { maxExpiryMs: 3600_000 });
  const deadline = Date.now() + 5000;
  while (!(await s.ping())) {
    if (Date.now() > deadline) throw new Error('redis not reachable');
    await new Promise((r) => setTimeout(r, 20));
  }
  return s;
}

describe('mqtt session store (redis)', () => {
  sessionStoreConformance(connected);

  const redis = new Redis(url);
  after(() => redis.disconnect());

  it('redis keys - per org, named by the hashed client key, every one with a bounded TTL', async () => {
    const s = await connected();
    const ref = { org: `org-${Date.now().toString(36)}`, key: 'k'.repeat(43) };
    await s.claim(ref, 'live:n:1', { clean: false, clientId: 'c', expiryMs: 60_000, maxSessions: 5 });
    await s.park(ref, 'live:n:1', 'q', { subs: {}, qos2: [], pending: [Buffer.from('m')], expiryMs: 60_000, maxQueue: 5 });
    for (const k of [sessionKey(ref), queueKey(ref), sessionIndexKey(ref.org)]) {
      assert.ok(k.includes(ref.org), k);
      const ttl = await redis.pttl(k);
      assert.ok(ttl > 0, `${k} has a TTL (${ttl})`);
    }
    assert.ok((await redis.pttl(sessionKey(ref))) <= 60_000);
    await s.discard(ref).finally(() => s.close());
  });
});
