/**
 * Raw event-store append throughput through group commit: N concurrent callers, each appending one
 * event at a time (awaiting its durable ack) to its own stream, for a fixed duration.
 *
 *   node --import tsx loadtest/appendBench.ts [--callers 64] [--seconds 10] [--orgs 8]
 *     [--window 2] [--concurrency 4] [--split 16] [--rate <appends/s>]
 *
 * With --rate the load is an open loop instead: appends are scheduled at that rate (round-robin over
 * `callers` streams, one idempotency key each, as commands carry), latency counted from each
 * append's scheduled time, after a warm-up that opens the pool's connections.
 *
 * Compare with the pgbench run of the same append function, 10 events per transaction:
 *   pgbench -n -c 8 -j 2 -T 10 -f loadtest/pgbench/append10.sql orghub
 */
import { parseArgs } from 'node:util';
import { randomUUID } from 'node:crypto';
import { createPostgresEventStore } from '../hub/eventstore/postgresEventStore.ts';
import { migrate } from '../hub/eventstore/migrate.ts';
import { openLoop } from './lib/openLoop.ts';
import { fixed, percentiles } from './lib/stats.ts';

const { values } = parseArgs({
  options: {
    callers: { type: 'string', default: '64' },
    seconds: { type: 'string', default: '10' },
    orgs: { type: 'string', default: '8' },
    window: { type: 'string', default: process.env.ORGHUB_GROUP_COMMIT_MS ?? '2' },
    max: { type: 'string', default: process.env.ORGHUB_GROUP_COMMIT_MAX ?? '500' },
    concurrency: { type: 'string', default: '4' },
    split: { type: 'string', default: '16' },
    rate: { type: 'string' },
  },
});
const callers = Number(values.callers);
const seconds = Number(values.seconds);
const orgs = Array.from({ length: Number(values.orgs) }, (_, i) => `bench-${i}`);

await migrate({ quiet: true });
const store = createPostgresEventStore({
  groupCommitMs: Number(values.window),
  groupCommitMax: Number(values.max),
  groupCommitConcurrency: Number(values.concurrency),
  groupCommitSplitMin: Number(values.split),
});

const latencies: number[] = [];
let count = 0;
let errors = 0;
const run = randomUUID().slice(0, 8);
const append = (c: number, n: number, key?: string) =>
  store.appendToStream(orgs[c % orgs.length], `bench-${run}-${c}`, [
    { type: 'bench.event', data: { c, n }, metadata: { actor: 'bench', node: 'bench', ...(key ? { idempotencyKey: key } : {}) } },
  ]);
const rate = values.rate === undefined ? undefined : Number(values.rate);
if (rate !== undefined && !(rate > 0)) throw new Error('--rate must be a positive number');
let started = performance.now();
if (rate === undefined) {
  // closed loop: every caller appends to its own stream, awaiting each durable ack
  const deadline = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: callers }, async (_, c) => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        try {
          await append(c, count);
          count++;
          latencies.push(performance.now() - t0);
        } catch (err) {
          if (errors++ < 3) console.error(err);
        }
      }
    }),
  );
} else {
  for (let w = 0; w < 50; w++) await Promise.all(Array.from({ length: 16 }, (_, k) => append(k, -1)));
  started = await openLoop(rate, Math.floor(rate * seconds), (i, scheduled) =>
    append(i % callers, i, `${run}-${i}`).then(
      () => {
        count++;
        latencies.push(performance.now() - scheduled);
      },
      (err) => {
        if (errors++ < 3) console.error(err);
      },
    ),
  );
}
const elapsed = (performance.now() - started) / 1000;
await store.close();
const [p50, p90, p99] = percentiles(latencies, [50, 90, 99]).map((v) => fixed(v));
console.log(
  JSON.stringify({ callers, rate: rate ?? 'closed loop', seconds: +elapsed.toFixed(2), events: count, errors, eventsPerSec: Math.round(count / elapsed), p50ms: p50, p90ms: p90, p99ms: p99, windowMs: Number(values.window), concurrency: Number(values.concurrency), splitMin: Number(values.split) }),
);
