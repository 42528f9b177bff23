import { Redis } from 'ioredis';
import { isValidTopic, matches } from '../acl/topic.ts';
import type { Logger } from '../log.ts';
import type { RetainedMessage, RetainedStore } from './retained.ts';

/** Redis key of an org's retained messages: a hash of topic → encoded message. */
export function retainedKey(org: string): string {
  return `orghub:retained:${org}`;
}

/**
 * Encoding of one hash value: a 1-byte format version, a 4-byte big-endian length of a JSON
 * metadata object, the metadata, then the payload bytes verbatim (binary-safe, no base64).
 */
const FORMAT = 1;

export function encodeRetained(m: RetainedMessage): Buffer {
  const meta = Buffer.from(JSON.stringify({ ct: m.contentType, q: m.qos, f: m.from, ts: m.ts }));
  const out = Buffer.allocUnsafe(5 + meta.length + m.payload.length);
  out[0] = FORMAT;
  out.writeUInt32BE(meta.length, 1);
  meta.copy(out, 5);
  out.set(m.payload, 5 + meta.length);
  return out;
}

/** Decodes a hash value; undefined for anything not written by `encodeRetained`. */
export function decodeRetained(topic: string, v: Buffer): RetainedMessage | undefined {
  if (v.length < 5 || v[0] !== FORMAT) return undefined;
  const n = v.readUInt32BE(1);
  if (5 + n > v.length) return undefined;
  try {
    const meta = JSON.parse(v.subarray(5, 5 + n).toString('utf8')) as { ct?: string; q?: number; f?: string; ts?: number };
    return {
      topic,
      payload: v.subarray(5 + n),
      contentType: meta.ct === 'json' ? 'json' : 'bytes',
      qos: meta.q === 1 ? 1 : 0,
      from: typeof meta.f === 'string' ? meta.f : undefined,
      ts: typeof meta.ts === 'number' ? meta.ts : 0,
    };
  } catch {
    return undefined;
  }
}

/**
 * Retained messages in Redis (`orghub:retained:<org>`, field = topic). Commands fail fast while
 * Redis is down (no offline queue), so a PUBLISH with retain is refused rather than parked.
 */
export function createRedisRetainedStore(url: string, log: Logger): RetainedStore {
  const redis = new Redis(url, {
    lazyConnect: false,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 3000,
    retryStrategy: (times) => Math.min(times * 200, 2000),
  });
  let warned = false;
  redis.on('error', (err) => {
    if (!warned) log.warn({ err: err.message }, 'Redis (retained MQTT messages) unreachable; retrying');
    warned = true;
  });
  redis.on('ready', () => {
    if (warned) log.info('Redis (retained MQTT messages) reachable again');
    warned = false;
  });

  return {
    async set(org, m) {
      const key = retainedKey(org);
      if (m.payload.length === 0) await redis.hdel(key, m.topic);
      else await redis.hset(key, m.topic, encodeRetained(m));
    },
    async match(org, pattern) {
      const all = await redis.hgetallBuffer(retainedKey(org));
      const out: RetainedMessage[] = [];
      for (const topic of Object.keys(all)) {
        if (!isValidTopic(topic) || !matches(pattern, topic)) continue;
        const m = decodeRetained(topic, all[topic]);
        if (m) out.push(m);
      }
      return out;
    },
    async ping() {
      if (redis.status !== 'ready') return false;
      try {
        return (await redis.ping()) === 'PONG';
      } catch {
        return false;
      }
    },
    async close() {
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}
