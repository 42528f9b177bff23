/**
 * Connection benches (BASELINES.md method).
 * (a) storm: C WebSocket connections opened `concurrency` at a time (a pool), connects/s counted
 *     at `open` (the hub verifies the ES256 token before it upgrades, so `open` includes auth;
 *     nats-server is counted at its INFO). Tokens are signed before timing, fresh for every run.
 * (b) idle: after --warm connections (kept open), N more authenticated connections with one
 *     subscription each (`devices/<sub>/#`); marginal server RSS
 *     growth per connection (median of 5 VmRSS samples before and after, after a settle).
 *
 *   node --import tsx loadtest/connections.ts [--mode storm|idle|both] [--target hub,uws[,nats]]
 *     [--connections 5000] [--runs 3] [--concurrency 100] [--idle 10000] [--sources 1]
 */
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { createBenchIssuer, type BenchIssuer } from './lib/tokens.ts';
import { parseTargets, startTarget, BENCH_ORG, type Target } from './lib/targets.ts';
import { openMany, closeAll, newTally, type OpenManyResult } from './lib/clients.ts';
import { cpuMicros, rssMedianKiB, openFileLimit, selfCpuMicros } from './lib/proc.ts';
import { median, si, fixed } from './lib/stats.ts';
import { Progress, printTable } from './lib/report.ts';

const { values: args } = parseArgs({
  options: {
    mode: { type: 'string', default: process.env.BENCH_MODE ?? 'both' },
    target: { type: 'string', default: process.env.BENCH_TARGET ?? 'hub,uws' },
    connections: { type: 'string', default: process.env.BENCH_CONNECTIONS ?? '5000' },
    runs: { type: 'string', default: process.env.BENCH_RUNS ?? '3' },
    concurrency: { type: 'string', default: '100' },
    idle: { type: 'string', default: process.env.BENCH_IDLE ?? '10000' },
    warm: { type: 'string', default: '2000' },
    sources: { type: 'string', default: '1' },
  },
});
const C = Number(args.connections);
const RUNS = Number(args.runs);
const CONC = Number(args.concurrency);
const IDLE = Number(args.idle);
const WARM = Number(args.warm);
const SOURCES = Number(args.sources);
const modes = args.mode === 'both' ? ['storm', 'idle'] : [args.mode];
for (const m of modes) if (m !== 'storm' && m !== 'idle') throw new Error(`unknown --mode ${m}`);
const targets = parseTargets(args.target, ['hub', 'uws']);

const need = Math.max(modes.includes('storm') ? C : 0, modes.includes('idle') ? IDLE : 0) + 200;
const limit = openFileLimit();
if (limit < need) {
  throw new Error(`open-file limit is ${limit}, need ${need}: run under \`bash -c 'ulimit -n 65536; npm run bench:connections'\``);
}

const progress = new Progress();

/** URL and subscription topic for client i, in the target's own syntax. */
function topicFor(t: Target, i: number): { baseUrl: string; topic?: string } {
  if (t.name === 'uws') return { baseUrl: `${t.wsUrl}?topic=${encodeURIComponent(`devices/d-${i}/#`)}` };
  if (t.name === 'nats') return { baseUrl: t.wsUrl, topic: `devices.d-${i}.>` };
  return { baseUrl: t.wsUrl, topic: `devices/d-${i}/#` };
}

interface StormRow { target: Target; run: number; ok: number; failed: number; perSec: number; p50ms: number; p99ms: number; cpuMsPerConn: number; genCpuPct: number; firstError?: string }

async function storm(t: Target, issuer: BenchIssuer): Promise<StormRow[]> {
  const rows: StormRow[] = [];
  let tokenSets: string[][] = [];
  if (t.needsToken) {
    progress.start(`${t.label}: signing ${RUNS}×${C} ES256 tokens`);
    for (let r = 0; r < RUNS; r++) tokenSets.push(await issuer.tokens(BENCH_ORG, C, `s${r}-`));
  }
  for (let run = 1; run <= RUNS; run++) {
    let done = 0;
    progress.start(`${t.label} storm run ${run}/${RUNS}`, () => ({ connected: done, note: `of ${C}` }));
    const cpu0 = cpuMicros(t.pid);
    const self0 = process.cpuUsage();
    // uWS raw subscribes on open (the BASELINES "minimal uWS pub/sub"); the hub and NATS only connect.
    const baseUrl = t.name === 'uws' ? `${t.wsUrl}?topic=bench/t` : t.wsUrl;
    const r: OpenManyResult = await openMany({
      proto: t.proto,
      baseUrl,
      tally: newTally(),
      count: C,
      concurrency: CONC,
      tokens: t.needsToken ? tokenSets[run - 1] : undefined,
      sourceAddresses: SOURCES > 1 ? SOURCES : undefined,
      onProgress: (n) => { done = n; },
    });
    const cpu1 = cpuMicros(t.pid);
    const selfUs = selfCpuMicros(self0);
    const secs = (r.lastConnectedAt - r.startedAt) / 1000;
    const ms = r.clients.map((c) => c.connectMs).sort((a, b) => a - b);
    const row: StormRow = {
      target: t,
      run,
      ok: r.clients.length,
      failed: r.failed,
      perSec: r.clients.length / secs,
      p50ms: ms[Math.floor(ms.length * 0.5)] ?? NaN,
      p99ms: ms[Math.floor(ms.length * 0.99)] ?? NaN,
      cpuMsPerConn: (cpu1 - cpu0) / 1000 / Math.max(1, r.clients.length),
      genCpuPct: selfUs / 1e4 / secs,
      firstError: r.firstError,
    };
    rows.push(row);
    progress.log(`${t.label} storm run ${run}: ${si(row.perSec)} connects/s, ${row.failed} failed${row.firstError ? ` (${row.firstError})` : ''}`);
    progress.start(`${t.label}: closing`);
    await closeAll(r.clients);
    await sleep(1000);
  }
  tokenSets = [];
  return rows;
}

interface IdleRow { target: Target; n: number; failed: number; beforeKiB: number; afterKiB: number; perConnKiB: number; helper?: string; firstError?: string }

async function idle(t: Target, issuer: BenchIssuer): Promise<IdleRow> {
  const tokens = t.needsToken ? await (progress.start(`${t.label}: signing ${IDLE} tokens`), issuer.tokens(BENCH_ORG, IDLE, 'd-')) : undefined;
  const warmTokens = t.needsToken ? await issuer.tokens(BENCH_ORG, WARM, 'w-') : undefined;
  // Warm-up: WARM connections opened and KEPT open, so the server's code paths, its heap and
  // allocator have reached a working size before the first sample. The figure is then the marginal
  // growth from WARM to WARM + IDLE connections, not start-up heap growth.
  progress.start(`${t.label}: warm-up (${WARM} connections kept open)`);
  const warm = await openMany({
    proto: t.proto, baseUrl: topicFor(t, 0).baseUrl, tally: newTally(), count: WARM, concurrency: CONC,
    tokens: tokens && warmTokens, topicFor: (i) => topicFor(t, IDLE + i).topic,
  });
  await sleep(2000);
  progress.start(`${t.label}: RSS before`);
  const before = await rssMedianKiB(t.pid);
  const helperBefore = t.helperPids.map((h) => rssMedianKiB(h.pid, 1));
  let done = 0;
  progress.start(`${t.label}: opening ${IDLE} subscribed connections`, () => ({ connected: done }));
  // The subscription topic is in the URL for uWS raw and sent as a frame for the others, so the
  // base URL and topic are per client: open in slices that share a URL builder.
  const clients: OpenManyResult['clients'] = [];
  let failed = 0;
  let firstError: string | undefined;
  if (t.name === 'uws') {
    for (let start = 0; start < IDLE; start += 1000) {
      const slice = await Promise.all(Array.from({ length: Math.min(1000, IDLE - start) / 100 }, (_, k) =>
        openMany({ proto: t.proto, baseUrl: topicFor(t, start + k * 100).baseUrl, tally: newTally(), count: 100, concurrency: Math.ceil(CONC / 10) })));
      for (const s of slice) { clients.push(...s.clients); failed += s.failed; firstError ??= s.firstError; }
      done = clients.length;
    }
  } else {
    const r = await openMany({
      proto: t.proto, baseUrl: t.wsUrl, tally: newTally(), count: IDLE, concurrency: CONC, tokens,
      topicFor: (i) => topicFor(t, i).topic, sourceAddresses: SOURCES > 1 ? SOURCES : undefined,
      onProgress: (n) => { done = n; }, maxFailures: 100,
    });
    clients.push(...r.clients);
    failed = r.failed;
    firstError = r.firstError;
  }
  progress.start(`${t.label}: settling`);
  await sleep(3000);
  const after = await rssMedianKiB(t.pid);
  const helperAfter = await Promise.all(t.helperPids.map((h) => rssMedianKiB(h.pid, 1)));
  const hb = await Promise.all(helperBefore);
  const row: IdleRow = {
    target: t,
    n: clients.length,
    failed,
    beforeKiB: before,
    afterKiB: after,
    perConnKiB: (after - before) / Math.max(1, clients.length),
    helper: t.helperPids.length ? t.helperPids.map((h, i) => `${h.label} ${fixed((helperAfter[i] - hb[i]) / Math.max(1, clients.length), 2)}`).join(', ') : undefined,
    firstError,
  };
  progress.log(`${t.label} idle: ${row.n} connections, RSS ${before} → ${after} KiB, ${fixed(row.perConnKiB)} KiB/connection${failed ? `, ${failed} failed (${firstError})` : ''}`);
  progress.start(`${t.label}: closing`);
  await closeAll(clients);
  await closeAll(warm.clients);
  return row;
}

async function main(): Promise<void> {
  const issuer = await createBenchIssuer();
  const stormRows: StormRow[] = [];
  const idleRows: IdleRow[] = [];
  const errors: string[] = [];
  try {
    for (const mode of modes) {
      for (const name of targets) {
        let t: Target | undefined;
        try {
          progress.start(`starting ${name}`);
          t = await startTarget(name, issuer, { ORGHUB_MAX_SUBSCRIPTIONS: '256' });
          if (mode === 'storm') stormRows.push(...(await storm(t, issuer)));
          else idleRows.push(await idle(t, issuer));
        } catch (e) {
          errors.push(`${mode} ${name}: ${(e as Error).message}`);
          progress.log(`${mode} ${name} FAILED: ${(e as Error).message}`);
        } finally {
          await t?.stop();
        }
      }
    }
  } finally {
    progress.stop();
    issuer.dispose();
  }
  if (stormRows.length) {
    process.stdout.write(`\nConnection storm: ${C} WebSocket connections, ${CONC} in flight; hub with ES256 tokens (pre-signed), uWS raw without auth\n\n`);
    printTable(
      ['server', 'run', 'connects/s', 'connect p50 ms', 'connect p99 ms', 'server CPU ms/connect', 'failed', 'generator CPU %'],
      stormRows.map((r) => [r.target.label, r.run, si(r.perSec), fixed(r.p50ms), fixed(r.p99ms), fixed(r.cpuMsPerConn, 3), r.failed, fixed(r.genCpuPct, 0)]),
    );
    const med = (n: string): number => median(stormRows.filter((r) => r.target.name === n).map((r) => r.perSec));
    if (stormRows.some((r) => r.target.name === 'hub') && stormRows.some((r) => r.target.name === 'uws')) {
      const ratio = med('hub') / med('uws');
      process.stdout.write(`\nratio hub/uws connects/s (medians): ${fixed(ratio)} (hub loses ${fixed((1 - ratio) * 100, 0)}%; goal ≤ 20%)\n`);
    }
  }
  if (idleRows.length) {
    process.stdout.write(`\nIdle memory: ${IDLE} connections, one subscription each (devices/<sub>/#)\n\n`);
    printTable(
      ['server', 'connections', 'RSS before MiB', 'RSS after MiB', 'KiB per connection', 'helper KiB/conn', 'failed'],
      idleRows.map((r) => [r.target.label, r.n, fixed(r.beforeKiB / 1024, 1), fixed(r.afterKiB / 1024, 1), fixed(r.perConnKiB), r.helper ?? '-', r.failed]),
    );
  }
  if (errors.length) {
    process.stdout.write(`\nNot measured:\n${errors.map((e) => `- ${e.split('\n')[0]}`).join('\n')}\n`);
    process.exitCode = 1;
  }
}

await main();
