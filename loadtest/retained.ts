/**
 * Retained-message lookup on SUBSCRIBE: one org holding N retained topics (`devices/d<i>/state`,
 * SIZE-byte payloads) in the machine's Redis, then M lookups of one device's filter
 * (`devices/d<k>/#`, one match each) through the hub's Redis store (topic index range + HMGET),
 * beside the whole-hash read it replaced (HGETALL + match in process), in the same run.
 *
 *   node --import tsx loadtest/retained.ts [--topics 10000] [--lookups 2000] [--size 200]
 */
import { parseArgs } from 'node:util';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { createLogger } from '../hub/log.ts';
import { matches } from '../hub/acl/topic.ts';
import { createRedisRetainedStore, decodeRetained, retainedIndexKey, retainedKey } from '../hub/mqtt/retainedRedis.ts';
import { printTable } from './lib/report.ts';
import { fixed, percentiles } from './lib/stats.ts';

const { values } = parseArgs({ options: { topics: { type: 'string', default: '10000' }, lookups: { type: 'string', default: '2000' }, size: { type: 'string', default: '200' } } });
const N = Number(values.topics);
const M = Number(values.lookups);
const SIZE = Number(values.size);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const org = `bench-retained-${randomUUID().slice(0, 8)}`;

const store = createRedisRetainedStore(REDIS_URL, createLogger('silent'), N);
const redis = new Redis(REDIS_URL);
while (!(await store.ping())) await new Promise((r) => setTimeout(r, 50));

async function time(label: string, lookup: (k: number) => Promise<number>): Promise<(string | number)[]> {
  const lat: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < M; i++) {
    const s = performance.now();
    const n = await lookup((i * 7919) % N);
    if (n !== 1) throw new Error(`${label}: ${n} messages for one device's filter`);
    lat.push(performance.now() - s);
  }
  const secs = (performance.now() - t0) / 1000;
  const [p50, p99] = percentiles(lat, [50, 99]);
  return [label, Math.round(M / secs), fixed(p50, 3), fixed(p99, 3)];
}

try {
  const payload = Buffer.alloc(SIZE, 'x');
  for (let i = 0; i < N; i += 500) {
    await Promise.all(Array.from({ length: Math.min(500, N - i) }, (_, j) => store.set(org, { topic: `devices/d${i + j}/state`, payload, contentType: 'bytes', qos: 1, ts: Date.now() })));
  }
  const indexed = await time('topic index range + HMGET (hub)', async (k) => (await store.match(org, `devices/d${k}/#`)).length);
  const whole = await time('HGETALL + match in process (before)', async (k) => {
    const all = await redis.hgetallBuffer(retainedKey(org));
    let n = 0;
    for (const t of Object.keys(all)) if (matches(`devices/d${k}/#`, t) && decodeRetained(t, all[t])) n++;
    return n;
  });
  process.stdout.write(`\nRetained lookup: one org with ${N} retained topics of ${SIZE} B, ${M} lookups of one device's filter (devices/d<k>/#)\n\n`);
  printTable(['read', 'lookups/s', 'p50 ms', 'p99 ms'], [indexed, whole]);
} finally {
  await redis.del(retainedKey(org), retainedIndexKey(org));
  await store.close();
  redis.disconnect();
}
