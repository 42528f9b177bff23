/**
 * Presence churn (issue 11): C WebSocket connections join and leave, against a hub with presence
 * on and, in the same run and alternating round by round, the same hub configuration with
 * `ORGHUB_PRESENCE=off` (the peer). One cycle = connect (ES256 token verified) + `sub` to a topic
 * of a presence namespace (`rooms/r<i mod 50>`: an org-scope and a topic-scope join, and a join
 * event on `$presence/rooms/...`) + close (both leaves and a leave event). The hub's CPU (utime +
 * stime from /proc) and the shared Redis server's CPU (INFO process_id) are read before the
 * connects and after the hub is quiet again: no WebSocket open and, with presence on, the bench
 * org's presence empty in Redis (the leaves are asynchronous), so every leave is paid for.
 * Tokens are fresh per round and target (the hub caches verified tokens).
 *
 *   npm run bench:presence -- [--connections 1000] [--rounds 3] [--concurrency 50]
 *
 * Reports per target and round: hub CPU µs per join+leave cycle, Redis CPU µs per cycle,
 * connects/s (first connect started → last connected) and the connect p50/p99; then the medians
 * and what presence adds (on − off).
 */
import { parseArgs } from 'node:util';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { createBenchIssuer } from './lib/tokens.ts';
import { startHub, type HubServer } from './lib/servers.ts';
import { orghubJson } from './lib/protocols.ts';
import { openMany, closeAll, newTally } from './lib/clients.ts';
import { cpuMicros, openFileLimit } from './lib/proc.ts';
import { median, fixed, si } from './lib/stats.ts';
import { Progress, printTable } from './lib/report.ts';
import { BENCH_ORG } from './lib/targets.ts';

const { values: args } = parseArgs({
  options: {
    connections: { type: 'string', default: process.env.BENCH_CONNECTIONS ?? '1000' },
    rounds: { type: 'string', default: process.env.BENCH_ROUNDS ?? '3' },
    concurrency: { type: 'string', default: '50' },
  },
});
const C = Number(args.connections);
const ROUNDS = Number(args.rounds);
const CONC = Number(args.concurrency);
if (openFileLimit() < C + 200) throw new Error(`open-file limit is ${openFileLimit()}, need ${C + 200}: run under \`bash -c 'ulimit -n 65536; npm run bench:presence'\``);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `orghub:bench-presence:${Date.now()}:`;
const ROOMS = 50;

interface Side { label: string; hub: HubServer; presence: boolean }
interface Row { side: string; round: number; ok: number; failed: number; hubUs: number; redisUs: number; perSec: number; p50: number; p99: number; quietMs: number; firstError?: string }

const progress = new Progress();

async function metric(hub: HubServer, name: string): Promise<number> {
  const text = await (await fetch(`${hub.httpUrl}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

/** Every presence key the bench org's connections create on `side`'s hub (scopes and the node's session hash). */
function presenceKeys(side: Side): string[] {
  const scopes = ['@org', ...Array.from({ length: ROOMS }, (_, i) => `rooms/r${i}`)];
  return [...scopes.map((s) => `${PREFIX}e:${BENCH_ORG}:${s}`), ...scopes.map((s) => `${PREFIX}c:${BENCH_ORG}:${s}`), `${PREFIX}s:${hostname()}:${side.hub.child.pid}`];
}

/** Waits until the hub has no WebSocket open and (presence on) the bench org's presence keys are empty. */
async function quiet(side: Side, redis: Redis): Promise<number> {
  const t0 = performance.now();
  const deadline = Date.now() + 60_000;
  for (;;) {
    const open = await metric(side.hub, 'orghub_ws_connections');
    // The listed entries per scope live in `e:` hashes and the node's sessions in `s:<node>`: with
    // presence on, those keys are gone once every leave has run (one EXISTS, no keyspace scan).
    const left = side.presence ? await redis.exists(...presenceKeys(side)) : 0;
    if (open === 0 && left === 0) return performance.now() - t0;
    if (Date.now() > deadline) throw new Error(`${side.label}: not quiet after 60 s (${open} open, ${left} presence keys)`);
    await sleep(20);
  }
}

async function churn(side: Side, round: number, tokens: string[], redis: Redis, redisPid: number): Promise<Row> {
  let done = 0;
  progress.start(`${side.label} round ${round}`, () => ({ connected: done, note: `of ${C}` }));
  const hub0 = cpuMicros(side.hub.child.pid);
  const redis0 = cpuMicros(redisPid);
  const r = await openMany({
    proto: orghubJson({ authHeader: true }),
    baseUrl: side.hub.wsUrl,
    tally: newTally(),
    count: C,
    concurrency: CONC,
    tokens,
    topicFor: (i) => `rooms/r${i % ROOMS}`,
    onProgress: (n) => { done = n; },
  });
  progress.start(`${side.label} round ${round}: closing`);
  await closeAll(r.clients);
  const quietMs = await quiet(side, redis);
  const hubUs = cpuMicros(side.hub.child.pid) - hub0;
  const redisUs = cpuMicros(redisPid) - redis0;
  const ms = r.clients.map((c) => c.connectMs).sort((a, b) => a - b);
  const n = Math.max(1, r.clients.length);
  return {
    side: side.label, round, ok: r.clients.length, failed: r.failed, hubUs: hubUs / n, redisUs: redisUs / n,
    perSec: r.clients.length / ((r.lastConnectedAt - r.startedAt) / 1000),
    p50: ms[Math.floor(ms.length * 0.5)] ?? NaN, p99: ms[Math.floor(ms.length * 0.99)] ?? NaN, quietMs, firstError: r.firstError,
  };
}

async function main(): Promise<void> {
  const issuer = await createBenchIssuer();
  const redis = new Redis(REDIS_URL);
  const redisPid = Number(/process_id:(\d+)/.exec(await redis.info('server'))?.[1]);
  if (!redisPid) throw new Error('no process_id in Redis INFO: the Redis server must run on this machine');
  const common = { ORGHUB_EVENT_STORE: 'none', ORGHUB_PRESENCE_NAMESPACES: 'rooms', ORGHUB_PRESENCE_PREFIX: PREFIX, ORGHUB_LOG_LEVEL: 'error' };
  progress.start('starting two hubs (presence on, presence off)');
  const sides: Side[] = [
    { label: 'presence on', hub: await startHub(issuer.env, { ...common, ORGHUB_PRESENCE: 'on' }), presence: true },
    { label: 'presence off', hub: await startHub(issuer.env, { ...common, ORGHUB_PRESENCE: 'off' }), presence: false },
  ];
  const rows: Row[] = [];
  try {
    // Warm-up: one unmeasured round each, so JIT and the token cache's first allocation are paid.
    for (const s of sides) await churn(s, 0, await issuer.tokens(BENCH_ORG, Math.min(C, 200), `w-${s.presence ? 'on' : 'off'}-`), redis, redisPid);
    for (let round = 1; round <= ROUNDS; round++) {
      const order = round % 2 ? sides : [...sides].reverse();
      for (const s of order) {
        progress.start(`${s.label}: signing ${C} tokens`);
        const tokens = await issuer.tokens(BENCH_ORG, C, `r${round}-${s.presence ? 'on' : 'off'}-`);
        await sleep(500);
        const row = await churn(s, round, tokens, redis, redisPid);
        rows.push(row);
        progress.log(`${s.label} round ${round}: ${fixed(row.hubUs, 0)} µs hub CPU per join+leave, ${si(row.perSec)} connects/s${row.failed ? `, ${row.failed} failed (${row.firstError})` : ''}`);
      }
    }
  } finally {
    progress.stop();
    for (const s of sides) await s.hub.stop();
    const keys = await redis.keys(`${PREFIX}*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
    issuer.dispose();
  }

  console.log(`\npresence churn: ${C} connections per round, each connect + sub rooms/r<i mod ${ROOMS}> + close, ${CONC} at a time, ${ROUNDS} rounds alternating\n`);
  printTable(
    ['target', 'round', 'ok', 'failed', 'hub CPU µs/cycle', 'Redis CPU µs/cycle', 'connects/s', 'connect p50 ms', 'p99 ms', 'quiet after ms'],
    rows.map((r) => [r.side, String(r.round), String(r.ok), String(r.failed), fixed(r.hubUs, 0), fixed(r.redisUs, 0), si(r.perSec), fixed(r.p50, 1), fixed(r.p99, 1), fixed(r.quietMs, 0)]),
  );
  const med = (label: string, f: (r: Row) => number) => median(rows.filter((r) => r.side === label).map(f));
  const on = { hub: med('presence on', (r) => r.hubUs), redis: med('presence on', (r) => r.redisUs), rate: med('presence on', (r) => r.perSec) };
  const off = { hub: med('presence off', (r) => r.hubUs), redis: med('presence off', (r) => r.redisUs), rate: med('presence off', (r) => r.perSec) };
  console.log(`\nmedians: presence on ${fixed(on.hub, 0)} µs hub + ${fixed(on.redis, 0)} µs Redis per cycle, ${si(on.rate)} connects/s; presence off ${fixed(off.hub, 0)} µs hub + ${fixed(off.redis, 0)} µs Redis, ${si(off.rate)} connects/s`);
  console.log(`presence adds ${fixed(on.hub - off.hub, 0)} µs of hub CPU (${fixed(on.hub / off.hub, 2)}×) and ${fixed(on.redis - off.redis, 0)} µs of Redis CPU per join+leave; connects/s on/off ${fixed(on.rate / off.rate, 2)}×`);
}

await main();
