/**
 * Raw event-store append throughput through group commit: N concurrent callers, each appending one
 * event at a time (awaiting its durable ack) to its own stream, for a fixed duration.
 *
 *   node --import tsx loadtest/appendBench.ts [--callers 64] [--seconds 10] [--orgs 8]
 *
 * Compare with the pgbench run of the same append function, 10 events per transaction:
 *   pgbench -n -c 8 -j 2 -T 10 -f loadtest/pgbench/append10.sql orghub
 */
import { parseArgs } from 'node:util';
import { randomUUID } from 'node:crypto';
import { createPostgresEventStore } from '../hub/eventstore/postgresEventStore.ts';
import { migrate } from '../hub/eventstore/migrate.ts';

const { values } = parseArgs({
  options: {
    callers: { type: 'string', default: '64' },
    seconds: { type: 'string', default: '10' },
    orgs: { type: 'string', default: '8' },
    window: { type: 'string', default: process.env.ORGHUB_GROUP_COMMIT_MS ?? '2' },
    max: { type: 'string', default: process.env.ORGHUB_GROUP_COMMIT_MAX ?? '500' },
    concurrency: { type: 'string', default: '4' },
    split: { type: 'string', default: '16' },
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
const deadline = performance.now() + seconds * 1000;
const started = performance.now();
await Promise.all(
  Array.from({ length: callers }, async (_, c) => {
    const org = orgs[c % orgs.length];
    const stream = `bench-${run}-${c}`;
    while (performance.now() < deadline) {
      const t0 = performance.now();
      try {
        await store.appendToStream(org, stream, [{ type: 'bench.event', data: { c, n: count }, metadata: { actor: 'bench', node: 'bench' } }]);
        count++;
        latencies.push(performance.now() - t0);
      } catch (err) {
        if (errors++ < 3) console.error(err);
      }
    }
  }),
);
const elapsed = (performance.now() - started) / 1000;
await store.close();
latencies.sort((a, b) => a - b);
const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))]?.toFixed(2);
console.log(
  JSON.stringify({ callers, seconds: +elapsed.toFixed(2), events: count, errors, eventsPerSec: Math.round(count / elapsed), p50ms: pct(50), p99ms: pct(99), windowMs: Number(values.window), concurrency: Number(values.concurrency), splitMin: Number(values.split) }),
);
