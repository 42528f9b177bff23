/**
 * Fan-out bench (BASELINES.md method): S subscribers on one topic, one publisher sending M
 * messages of 128 B as fast as its socket drains. Per run: deliveries/s (all deliveries / time
 * from first publish to last delivery), server CPU µs per delivery (/proc/<pid>/stat), and
 * publish-to-deliver p50/p99 from sampled subscribers (timestamp in the payload, one clock).
 *
 *   node --import tsx loadtest/fanout.ts [--target hub|nats|uws|both|all] [--messages 2000]
 *     [--subscribers 1000] [--runs 3] [--size 128] [--sampled 20] [--rate 0] [--limits on|off|both]
 *     [--rounds 2]
 * `--limits both` runs the hub with limits on and off, alternating (`--rounds` times each), and
 * prints the ratio of their median deliveries/s (the cost of the limit checks).
 * Env: BENCH_MESSAGES, BENCH_SUBSCRIBERS, BENCH_RUNS, BENCH_TARGET.
 */
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import { createBenchIssuer } from './lib/tokens.ts';
import { parseTargets, startTarget, BENCH_ORG, type Target } from './lib/targets.ts';
import { openMany, connectClient, closeAll, newTally, resetTally, type BenchClient, type Tally } from './lib/clients.ts';
import { publish } from './lib/publisher.ts';
import { cpuMicros, selfCpuMicros, openFileLimit } from './lib/proc.ts';
import { percentiles, median, si, fixed } from './lib/stats.ts';
import { Progress, printTable } from './lib/report.ts';

const { values: args } = parseArgs({
  options: {
    target: { type: 'string', default: process.env.BENCH_TARGET ?? 'both' },
    messages: { type: 'string', default: process.env.BENCH_MESSAGES ?? '2000' },
    subscribers: { type: 'string', default: process.env.BENCH_SUBSCRIBERS ?? '1000' },
    runs: { type: 'string', default: process.env.BENCH_RUNS ?? '3' },
    size: { type: 'string', default: '128' },
    sampled: { type: 'string', default: '20' },
    rate: { type: 'string', default: '0' },
    concurrency: { type: 'string', default: '100' },
    limits: { type: 'string', default: 'on' },
    rounds: { type: 'string', default: '2' },
  },
});
const M = Number(args.messages);
const S = Number(args.subscribers);
const RUNS = Number(args.runs);
const SIZE = Number(args.size);
const SAMPLED = Math.min(S, Number(args.sampled));
const RATE = Number(args.rate);
const CONC = Number(args.concurrency);
// `both` = on,off; a comma list (e.g. `off,on`) sets the order, to rule out an order bias.
const LIMIT_MODES = args.limits === 'both' ? ['on', 'off'] : (args.limits ?? 'on').split(',');
if (!LIMIT_MODES.every((m) => m === 'on' || m === 'off')) throw new Error(`bad --limits ${args.limits} (on|off|both)`);
const ROUNDS = LIMIT_MODES.length > 1 ? Number(args.rounds) : 1;
for (const [k, v] of Object.entries({ M, S, RUNS, SIZE, CONC })) {
  if (!Number.isInteger(v) || v <= 0) throw new Error(`bad value for ${k}: ${v}`);
}
if (openFileLimit() < S + 100) throw new Error(`open-file limit ${openFileLimit()} is below ${S + 100}: raise ulimit -n`);

const progress = new Progress();

interface RunResult {
  target: Target;
  run: number;
  delivered: number;
  expected: number;
  seconds: number;
  cpuUsPerDelivery: number;
  helperCpuUsPerDelivery: number[];
  p50: number;
  p99: number;
  genCpuPct: number;
  other: number;
}

/** Waits until `done()` or no progress in `idleMs`, bounded by `maxMs`. */
async function waitDeliveries(tally: Tally, expected: number, idleMs: number, maxMs: number): Promise<void> {
  const deadline = performance.now() + maxMs;
  let lastCount = -1;
  let lastChange = performance.now();
  while (tally.delivered < expected && performance.now() < deadline) {
    if (tally.delivered !== lastCount) { lastCount = tally.delivered; lastChange = performance.now(); }
    if (performance.now() - lastChange > idleMs) break;
    await sleep(2);
  }
}

/** Publishes probes until every subscriber has seen one (subscriptions are live end to end). */
async function probe(t: Target, pub: BenchClient, subs: BenchClient[]): Promise<void> {
  const deadline = Date.now() + 20_000;
  let i = 0;
  while (Date.now() < deadline) {
    if (subs.every((c) => c.delivered > 0)) return;
    pub.ws.send(t.proto.publishFrame(t.topic, `P${i++}|`.padEnd(SIZE, 'x')), { binary: t.proto.binary });
    await sleep(50);
  }
  const missing = subs.filter((c) => c.delivered === 0).length;
  throw new Error(`${t.label}: ${missing} of ${subs.length} subscribers never received a probe`);
}

async function quiesce(tally: Tally, ms = 300, maxMs = 10_000): Promise<void> {
  const deadline = Date.now() + maxMs;
  let last = -1;
  while (Date.now() < deadline && tally.delivered !== last) {
    last = tally.delivered;
    await sleep(ms);
  }
}

async function benchTarget(t: Target, tokens: string[], pubToken: string | undefined): Promise<RunResult[]> {
  const tally = newTally();
  let connected = 0;
  progress.start(`${t.label}: connecting ${S}`, () => ({ connected }));
  const opened = await openMany({
    proto: t.proto,
    baseUrl: t.wsUrl,
    tally,
    count: S,
    concurrency: CONC,
    tokens: t.needsToken ? tokens : undefined,
    topicFor: () => t.topic,
    sampled: SAMPLED,
    onProgress: (n) => { connected = n; },
  });
  if (opened.failed) throw new Error(`${t.label}: ${opened.failed} subscribers failed to connect: ${opened.firstError}`);
  const subs = opened.clients;
  const pub = await connectClient({ proto: t.proto, baseUrl: t.wsUrl, token: pubToken, tally: newTally() });
  const results: RunResult[] = [];
  try {
    progress.start(`${t.label}: probing`, () => ({ connected: subs.length, delivered: tally.delivered }));
    await probe(t, pub, subs);
    await quiesce(tally);
    progress.start(`${t.label}: warm-up`, () => ({ delivered: tally.delivered }));
    resetTally(tally);
    const warm = Math.min(M, 1000);
    await publish({ proto: t.proto, ws: pub.ws, topic: t.topic, count: warm, size: SIZE, tag: 'w', rate: RATE });
    await waitDeliveries(tally, warm * subs.length, 5000, 120_000);
    await quiesce(tally);

    for (let run = 1; run <= RUNS; run++) {
      resetTally(tally);
      for (const c of subs) c.delivered = 0;
      const expected = M * subs.length;
      progress.start(`${t.label} run ${run}/${RUNS}`, () => ({ delivered: tally.delivered, note: `of ${expected}` }));
      const cpu0 = cpuMicros(t.pid);
      const helper0 = t.helperPids.map((h) => cpuMicros(h.pid));
      const self0 = process.cpuUsage();
      const p = await publish({ proto: t.proto, ws: pub.ws, topic: t.topic, count: M, size: SIZE, tag: `r${run}`, rate: RATE });
      await waitDeliveries(tally, expected, 5000, 120_000);
      const cpu1 = cpuMicros(t.pid);
      const helper1 = t.helperPids.map((h) => cpuMicros(h.pid));
      const selfUs = selfCpuMicros(self0);
      const seconds = (tally.lastAt - p.firstAt) / 1000;
      const [p50, p99] = percentiles(tally.latencies, [50, 99]);
      results.push({
        target: t,
        run,
        delivered: tally.delivered,
        expected,
        seconds,
        cpuUsPerDelivery: (cpu1 - cpu0) / tally.delivered,
        helperCpuUsPerDelivery: helper1.map((h, i) => (h - helper0[i]) / tally.delivered),
        p50,
        p99,
        genCpuPct: (selfUs / 1e4) / seconds,
        other: tally.other,
      });
      const r = results[results.length - 1];
      progress.log(`${t.label} run ${run}: ${si(r.delivered / r.seconds)} deliveries/s, ${fixed(r.cpuUsPerDelivery, 3)} µs CPU/delivery, p50 ${fixed(p50)} ms, p99 ${fixed(p99)} ms` +
        (r.delivered < expected ? `, LOST ${expected - r.delivered}` : '') + (tally.dropped ? `, ${tally.dropped} connections closed by the server` : '') + (tally.other ? `, ${tally.other} non-delivery frames e.g. ${tally.otherSamples[0]}` : ''));
      await quiesce(tally, 200);
      await sleep(300);
    }
  } finally {
    progress.start(`${t.label}: closing`);
    await closeAll([...subs, pub]);
  }
  return results;
}

async function main(): Promise<void> {
  const targets = parseTargets(args.target, ['hub', 'nats']);
  const issuer = await createBenchIssuer();
  const tokens = targets.includes('hub') ? await issuer.tokens(BENCH_ORG, S, 'sub-') : [];
  const pubToken = targets.includes('hub') ? await issuer.token(BENCH_ORG, 'publisher') : undefined;
  const all: RunResult[] = [];
  const errors: string[] = [];
  try {
    // The hub once per limits mode and round, alternating (on, off, on, off, ...); peers once.
    const plan: { name: (typeof targets)[number]; mode?: string }[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      for (const name of targets) {
        if (name === 'hub') for (const mode of LIMIT_MODES) plan.push({ name, mode });
        else if (round === 0) plan.push({ name });
      }
    }
    for (const { name, mode } of plan) {
      progress.start(`starting ${name}${mode ? ` (limits ${mode})` : ''}`);
      let t: Target | undefined;
      try {
        // A burst queues up to M frames per subscriber; keep the hub's slow-consumer limit (default
        // 4 MiB) above that so the bench measures throughput, not the disconnect policy.
        const backpressure = Math.min(256 * 1024 * 1024, Math.max(4 * 1024 * 1024, M * 512));
        t = await startTarget(name, issuer, { ORGHUB_MAX_BACKPRESSURE: String(backpressure), ...(mode ? { ORGHUB_LIMITS: mode } : {}) });
        if (mode && LIMIT_MODES.length > 1) t = { ...t, label: `${t.label} limits ${mode}` };
        all.push(...(await benchTarget(t, tokens, t.needsToken ? pubToken : undefined)));
      } catch (e) {
        errors.push(`${name}: ${(e as Error).message}`);
        progress.log(`${name} FAILED: ${(e as Error).message}`);
      } finally {
        await t?.stop();
      }
    }
  } finally {
    progress.stop();
    issuer.dispose();
  }

  process.stdout.write(`\nFan-out: ${S} subscribers, 1 topic, ${M} messages of ${SIZE} B, ${RATE ? `${RATE} msg/s` : 'publisher as fast as the socket drains'}; latency from ${SAMPLED} sampled subscribers\n\n`);
  printTable(
    ['server', 'run', 'deliveries/s', 'CPU µs/delivery', 'helper CPU µs/delivery', 'p50 ms', 'p99 ms', 'delivered/expected', 'generator CPU %'],
    all.map((r) => [
      r.target.label,
      r.run,
      si(r.delivered / r.seconds),
      fixed(r.cpuUsPerDelivery, 3),
      r.target.helperPids.length ? r.target.helperPids.map((h, i) => `${h.label} ${fixed(r.helperCpuUsPerDelivery[i], 3)}`).join(', ') : '-',
      fixed(r.p50),
      fixed(r.p99),
      `${r.delivered}/${r.expected}`,
      fixed(r.genCpuPct, 0),
    ]),
  );
  const med = (name: string, f: (r: RunResult) => number): number => median(all.filter((r) => r.target.name === name).map(f));
  const rate = (r: RunResult): number => r.delivered / r.seconds;
  const cpu = (r: RunResult): number => r.cpuUsPerDelivery;
  for (const other of ['nats', 'uws'] as const) {
    if (all.some((r) => r.target.name === 'hub') && all.some((r) => r.target.name === other)) {
      process.stdout.write(`\nratio hub/${other} (medians): deliveries/s ${fixed(med('hub', rate) / med(other, rate))}, ` +
        `CPU µs/delivery ${fixed(med('hub', cpu) / med(other, cpu))} (hub process only; +nats-server: ` +
        `${fixed((med('hub', cpu) + med('hub', (r) => r.helperCpuUsPerDelivery[0] ?? 0)) / med(other, cpu))})\n`);
    }
  }
  if (LIMIT_MODES.length > 1) {
    const by = (mode: string) => median(all.filter((r) => r.target.label.endsWith(`limits ${mode}`)).map(rate));
    const cpuBy = (mode: string) => median(all.filter((r) => r.target.label.endsWith(`limits ${mode}`)).map(cpu));
    process.stdout.write(`\nlimits on / off (medians over ${ROUNDS} alternating rounds): deliveries/s ${fixed(by('on') / by('off'))}, CPU µs/delivery ${fixed(cpuBy('on') / cpuBy('off'))}\n`);
  }
  if (errors.length) {
    process.stdout.write(`\nNot measured:\n${errors.map((e) => `- ${e.split('\n')[0]}`).join('\n')}\n`);
    process.exitCode = 1;
  }
}

await main();
