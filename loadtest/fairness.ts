/**
 * Tenant fairness (issue 9): org B's command ack latency while org A floods commands, and while
 * someone floods the unauthenticated `/ready`, against B alone in the same run (the peer). A real
 * hub child process (dedicated nats-server, the machine's Postgres); B sends paced commands on one
 * WebSocket connection; the floods run in their own child processes (hub/testing/flood.ts).
 *
 * Phases, repeated `--rounds` times: B alone, B + A's command flood, B alone, B + /ready flood,
 * B + /health flood. Each ratio compares B's p99 under a flood with the p99 of all B-alone samples
 * of the run. The /health flood (same connections and rate, an endpoint that checks nothing) is the
 * peer for the /ready flood: the HTTP traffic's own cost on this machine, client included.
 * `BENCH_HUB_ENV='{"ORGHUB_GROUP_COMMIT_SLOTS_PER_ORG":"2"}'` passes settings to the hub.
 * Limits are on (the default `standard` tier for both orgs; A's command rates are unlimited unless
 * `--a-org-rate` is given, so that by default its flood meets the hub's capacity);
 * `--a-org-rate 2000` holds org A to that many commands/s for the whole org (its connection and user
 * buckets are raised to match, so the org bucket is the one that binds) and `--a-tier free|standard|
 * enterprise` gives A a tier (its group-commit weight too): A's flood then meets its rate limit,
 * the real defence, instead of the hub's capacity. By default A resends at once after a refusal
 * (hostile: past ORGHUB_LIMITS_ABUSE refusals in 10 s its connections are closed, 4003);
 * `--a-honour-retry` makes it wait `retryAfterMs` (a heavy but compliant tenant, at its rate).
 * `--a-org-burst-seconds 2` gives A's org buckets that much burst instead of its tier's
 * `orgBurstSeconds` (0.25 s; before it existed, org buckets held `burstSeconds`, 2 s): the peer that
 * shows what the short org burst buys B.
 * `--ops-port` starts the hub with ORGHUB_OPS_PORT and floods `/ready` there (its own thread); the
 * `/health` peer flood stays on the main port: the cost of any HTTP flood a tenant can send.
 * `--no-a-flood` skips A's command-flood phase and the alone phase after it, for runs that
 * measure only the HTTP floods: B still sends --rate x --seconds commands per phase.
 * `--a-own-hub` sends A's flood to a second hub process (same Postgres, same machine): what B pays
 * for sharing Postgres and the cores but not the hub's event loop (a diagnostic peer).
 * `--no-http-floods` skips the /ready and /health flood phases (runs that measure only A's flood).
 * `--foreign-peer` adds a phase per round: the same HTTP flood aimed at a server outside the hub
 * (loadtest/peers/uwsRaw.ts, its own process): what the flood costs B on this machine when the hub
 * serves none of it (the client, the kernel and another process's CPU), the floor of any ops
 * listener, separate process included.
 * `--flood-nice 19` runs every flood process (A's and the HTTP ones) at that nice value: the
 * generators then stand for clients on other machines and take only CPU the servers leave idle
 * (B's own client and the servers stay at 0). The default 0 charges the generators' CPU to B.
 * `--ready-client fetch` floods with Node's fetch instead of the lean keep-alive client (the default,
 * hub/testing/flood.ts): fetch costs about nine times the CPU per request, which on 2 cores is most of
 * what a flood at 2000/s cost B before (the generator's CPU per request is printed for each flood).
 *
 *   npm run bench:fairness        (node --import tsx loadtest/fairness.ts)
 *   options: --rate 200 --seconds 6 --rounds 2 --flood-conns 4 --flood-inflight 250
 *            --ready-conns 16 --ready-rate 2000 --ready-client lean|fetch --flood-nice 0
 *            --ops-port --no-a-flood --no-http-floods --a-own-hub --foreign-peer
 *
 * Targets: B's p99 under A's flood <= 2 x alone; under the /ready flood <= 1.2 x alone.
 */
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { migrate } from '../hub/eventstore/migrate.ts';
import { openWs, pacedCommands, startFlood, type FloodResult } from '../hub/testing/flood.ts';
import { startHub, startUwsRaw, type HubServer, type RunningServer } from './lib/servers.ts';
import { freePort } from './lib/proc.ts';
import { createBenchIssuer } from './lib/tokens.ts';
import { percentiles, fixed, si } from './lib/stats.ts';
import { Progress, printTable } from './lib/report.ts';

const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '200' },
    seconds: { type: 'string', default: '6' },
    rounds: { type: 'string', default: '2' },
    'flood-conns': { type: 'string', default: '4' },
    'flood-inflight': { type: 'string', default: '250' },
    'ready-conns': { type: 'string', default: '16' },
    'ready-rate': { type: 'string', default: '2000' },
    'ready-client': { type: 'string', default: 'lean' },
    'flood-nice': { type: 'string', default: '0' },
    'a-org-rate': { type: 'string', default: '0' },
    'a-tier': { type: 'string', default: '' },
    'a-honour-retry': { type: 'boolean', default: false },
    'a-org-burst-seconds': { type: 'string', default: '0' },
    'ops-port': { type: 'boolean', default: false },
    'no-a-flood': { type: 'boolean', default: false },
    'foreign-peer': { type: 'boolean', default: false },
    'no-http-floods': { type: 'boolean', default: false },
    'a-own-hub': { type: 'boolean', default: false },
  },
});
const RATE = Number(values.rate);
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const FLOOD_CONNS = Number(values['flood-conns']);
const FLOOD_INFLIGHT = Number(values['flood-inflight']);
const READY_CONNS = Number(values['ready-conns']);
const READY_RATE = Number(values['ready-rate']);
const READY_CLIENT = values['ready-client'] as 'lean' | 'fetch';
if (READY_CLIENT !== 'lean' && READY_CLIENT !== 'fetch') throw new Error(`--ready-client must be lean or fetch, not ${READY_CLIENT}`);
const FLOOD_NICE = Number(values['flood-nice']);
if (!Number.isInteger(FLOOD_NICE) || FLOOD_NICE < 0 || FLOOD_NICE > 19) throw new Error(`--flood-nice must be an integer 0-19, not ${values['flood-nice']}`);
const A_ORG_RATE = Number(values['a-org-rate']);
const A_TIER = values['a-tier'] ?? '';
const A_RETRY = values['a-honour-retry'] ?? false;
/** A's org buckets hold this many seconds of their rate (0: its tier's `orgBurstSeconds`, 0.25 by default). */
const A_ORG_BURST_S = Number(values['a-org-burst-seconds']);
if (!(A_ORG_BURST_S === 0 || (A_ORG_BURST_S >= 0.01 && A_ORG_BURST_S <= 3600))) throw new Error('--a-org-burst-seconds must be 0 (the tier\'s) or within 0.01-3600');
const OPS_PORT = values['ops-port'] ?? false;
const A_FLOOD = !(values['no-a-flood'] ?? false);
const FOREIGN = values['foreign-peer'] ?? false;
const HTTP_FLOODS = !(values['no-http-floods'] ?? false);
const A_OWN_HUB = values['a-own-hub'] ?? false;
if (!A_FLOOD && !HTTP_FLOODS) throw new Error('--no-a-flood and --no-http-floods leave nothing to measure');
if (!Number.isInteger(A_ORG_RATE) || A_ORG_RATE < 0) throw new Error('--a-org-rate must be an integer >= 0 (0: the tier\'s rate)');
if (A_TIER && !['free', 'standard', 'enterprise'].includes(A_TIER)) throw new Error('--a-tier must be free, standard or enterprise');
for (const [k, v] of Object.entries({ RATE, SECONDS, ROUNDS, FLOOD_CONNS, FLOOD_INFLIGHT, READY_CONNS })) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${k.toLowerCase().replace('_', '-')} must be a positive integer`);
}
const progress = new Progress();
const run = randomBytes(3).toString('hex');

/** Waits until the hub's append queue is empty: A's commands still queued when its flood stops. */
async function drained(httpUrl: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const text = await (await fetch(`${httpUrl}/metrics`)).text();
    if (Number(/^orghub_eventstore_pending (\S+)$/m.exec(text)?.[1]) === 0) return;
    if (Date.now() > deadline) throw new Error('the append queue did not drain');
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function main(): Promise<void> {
  progress.log(`bench:fairness run ${run}: B at ${RATE} commands/s, ${SECONDS} s per phase, ${ROUNDS} rounds${A_ORG_RATE ? `, A held to ${A_ORG_RATE} commands/s` : ''}${A_TIER ? `, A's tier ${A_TIER}` : ''}${OPS_PORT ? ', /ready on the ops port' : ''}${A_FLOOD ? '' : ', no A flood'}`);
  await migrate({ quiet: true });
  const issuer = await createBenchIssuer();
  let hub: HubServer | undefined;
  let foreign: RunningServer | undefined;
  let aHub: HubServer | undefined;
  try {
    progress.start('starting nats-server and hub');
    const hubEnv = JSON.parse(process.env.BENCH_HUB_ENV ?? '{}') as Record<string, string>;
    // Without --a-org-rate, A's command rates are unlimited (its flood meets the hub's capacity, not
    // its tier's user bucket, which would otherwise refuse it and close it for abuse, 4003).
    const aRate = A_ORG_RATE || 1e9;
    hubEnv.ORGHUB_LIMITS_ORGS = JSON.stringify({ [`bench-fair-a-${run}`]: { ...(A_TIER ? { tier: A_TIER } : {}), ...(A_ORG_BURST_S ? { orgBurstSeconds: A_ORG_BURST_S } : {}), commands: { org: aRate, user: Math.min(1e9, aRate * 10), connection: Math.min(1e9, aRate * 10) } } });
    if (OPS_PORT) hubEnv.ORGHUB_OPS_PORT ??= String(await freePort());
    if (Object.keys(hubEnv).length) progress.log(`hub settings: ${JSON.stringify(hubEnv)}`);
    hub = await startHub(issuer.env, { ORGHUB_LOG_LEVEL: 'warn', ...hubEnv });
    if (FOREIGN) foreign = await startUwsRaw();
    if (A_OWN_HUB) aHub = await startHub(issuer.env, { ORGHUB_LOG_LEVEL: 'warn', ...hubEnv });
    const aTarget = aHub ?? hub;
    const b = await openWs(hub.wsUrl, await issuer.token(`bench-fair-b-${run}`, 'admin-b'));
    const aToken = await issuer.token(`bench-fair-a-${run}`, 'admin-a');
    progress.stop();
    const n = RATE * SECONDS;
    let phase = 0;
    const bPhase = async (label: string) => {
      progress.start(label);
      const r = await pacedCommands(b, n, RATE, 1_000_000 * ++phase, `${run}-${phase}`);
      progress.stop();
      if (r.errors.length) throw new Error(`${label}: B got errors ${r.errors.slice(0, 5).join(',')}`);
      return r;
    };
    await pacedCommands(b, 200, RATE, 0, `${run}-warm`);
    const alone: number[] = [];
    const underA: number[] = [];
    const underReady: number[] = [];
    const underHealth: number[] = [];
    const underForeign: number[] = [];
    const aloneP99s: number[] = [];
    const floods: { a: FloodResult[]; ready: FloodResult[]; health: FloodResult[]; foreign: FloodResult[] } = { a: [], ready: [], health: [], foreign: [] };
    /** B's samples sent 2 s or more into A's flood phase (2.5 s after A started): A's tier burst is spent by then. */
    const underASteady: number[] = [];
    const aloneRun = async (label: string) => {
      const xs = (await bPhase(label)).latencies;
      aloneP99s.push(percentiles(xs, [99])[0]);
      alone.push(...xs);
    };
    const httpFlood = async (round: number, path: string, url: string, into: number[], results: FloodResult[], where = url === hub!.httpUrl ? '' : ' (ops port)') => {
      const f = startFlood({ mode: 'ready', path, url, conns: READY_CONNS, rate: READY_RATE, client: READY_CLIENT, nice: FLOOD_NICE });
      await f.started;
      await new Promise((r) => setTimeout(r, 500));
      into.push(...(await bPhase(`round ${round}: B + ${path} flood${where}`)).latencies);
      results.push(await f.stop());
    };
    for (let round = 1; round <= ROUNDS; round++) {
      await aloneRun(`round ${round}: B alone`);
      if (A_FLOOD) {
        await aFlood(round);
        await aloneRun(`round ${round}: B alone`);
      }
      if (!HTTP_FLOODS) continue;
      await httpFlood(round, '/ready', hub.opsUrl, underReady, floods.ready);
      await httpFlood(round, '/health', hub.httpUrl!, underHealth, floods.health);
      if (foreign) await httpFlood(round, '/ready', foreign.httpUrl!, underForeign, floods.foreign, ' (a server outside the hub)');
    }
    async function aFlood(round: number) {
      const fa = startFlood({ mode: 'cmd', url: aTarget.wsUrl, token: aToken, conns: FLOOD_CONNS, inflight: FLOOD_INFLIGHT, honourRetry: A_RETRY, nice: FLOOD_NICE });
      await fa.started;
      await new Promise((r) => setTimeout(r, 500));
      const ra = await bPhase(`round ${round}: B + A's command flood`);
      underA.push(...ra.latencies);
      ra.latencies.forEach((l, i) => ra.sentMs[i] >= 2000 && underASteady.push(l));
      floods.a.push(await fa.stop());
      await drained(aTarget.opsUrl);
    }
    b.terminate();
    const [, baseP99] = percentiles(alone, [50, 99]);
    const row = (name: string, xs: number[], target: string) => {
      const [p50, p99, p999] = percentiles(xs, [50, 99, 99.9]);
      return [name, xs.length, fixed(p50), fixed(p99), fixed(p999), fixed(p99 / baseP99, 2), target];
    };
    const rate = (fs: FloodResult[]) => si(fs.reduce((s, f) => s + f.ok, 0) / fs.reduce((s, f) => s + f.seconds, 0));
    /** The flood generator's own CPU per answer, µs (it shares the machine's cores with the hub and B). */
    const genCpu = (fs: FloodResult[]) => fixed(fs.reduce((s, f) => s + f.cpuMicros, 0) / Math.max(1, fs.reduce((s, f) => s + f.ok, 0)), 1);
    const errs = (fs: FloodResult[]) => JSON.stringify(fs.reduce((acc, f) => {
      for (const [k, v] of Object.entries(f.errors)) acc[k] = (acc[k] ?? 0) + v;
      return acc;
    }, {} as Record<string, number>));
    const aRatio = percentiles(underA, [99])[0] / baseP99;
    const rRatio = percentiles(underReady, [99])[0] / baseP99;
    const hRatio = percentiles(underHealth, [99])[0] / baseP99;
    process.stdout.write(`\n## bench:fairness (${new Date().toISOString()}, B at ${RATE} commands/s, ${SECONDS} s x ${ROUNDS} rounds per phase${A_ORG_RATE ? `, A's org rate ${A_ORG_RATE}/s` : ''}${A_TIER ? `, A's tier ${A_TIER}` : ''}${A_ORG_BURST_S ? `, A's org burst ${A_ORG_BURST_S} s` : ''}${A_RETRY ? ', A honours retryAfterMs' : ''}${OPS_PORT ? ', /ready on ORGHUB_OPS_PORT (worker thread), /health on the main port' : ''}${A_FLOOD ? '' : ', no A flood'}${A_OWN_HUB ? ', A on a hub process of its own (same Postgres and machine)' : ''}${FLOOD_NICE ? `, floods at nice ${FLOOD_NICE}` : ''}${HTTP_FLOODS ? `, ${READY_CLIENT} HTTP client` : ', no HTTP floods'})\n\n`);
    printTable(
      ['B\'s phase', 'acks', 'p50 ms', 'p99 ms', 'p99.9 ms', 'p99 / alone', 'target'],
      [
        row('alone (peer)', alone, ''),
        ...(A_FLOOD
          ? [
              row(`A floods (${FLOOD_CONNS} conns x ${FLOOD_INFLIGHT} in flight)`, underA, `<= 2x: ${aRatio <= 2 ? 'PASS' : 'FAIL'}`),
              row(`  the same, from 2 s into the phase (A's burst spent)`, underASteady, '(diagnostic)'),
            ]
          : []),
        ...(HTTP_FLOODS
          ? [
              row(`/ready flood${OPS_PORT ? ' on the ops port' : ''} (${READY_CONNS} conns, ${READY_RATE}/s)`, underReady, `<= 1.2x: ${rRatio <= 1.2 ? 'PASS' : 'FAIL'}`),
              row(`/health flood, peer (same conns and rate)`, underHealth, `/ready - /health: ${fixed(rRatio - hRatio, 2)}`),
            ]
          : []),
        ...(foreign && HTTP_FLOODS ? [row(`the same flood on a server outside the hub, peer`, underForeign, '(the floor)')] : []),
      ],
    );
    process.stdout.write(`\nB alone, p99 of each alone phase: ${aloneP99s.map((x) => fixed(x, 1)).join(', ')} ms (the noise floor)\n`);
    const aP = (k: 'p50' | 'p99') => floods.a.map((f) => fixed(f[k] ?? NaN, 1)).join(', ');
    if (A_FLOOD) process.stdout.write(`A's own ack latency under its flood: p50 ${aP('p50')} ms, p99 ${aP('p99')} ms (per round)\n`);
    const m = await (await fetch(`${hub.opsUrl}/metrics`)).text();
    const metric = (name: string) => /^\S+ (\S+)$/m.exec(m.split('\n').find((l) => l.startsWith(`${name} `)) ?? '')?.[1] ?? 'n/a';
    process.stdout.write(`hub: ${metric('orghub_ws_frames_queued_total')} frames queued (fair turns or holds), ${metric('orghub_ws_rate_holds_total')} holds after a refusal, ${metric('orghub_ws_queue_overflows_total')} queue overflows\n`);
    process.stdout.write(`${A_FLOOD ? `A's flood: ${rate(floods.a)} acks/s, errors ${errs(floods.a)}; ` : ''}${HTTP_FLOODS ? `/ready flood: ${rate(floods.ready)} answers/s, errors ${errs(floods.ready)}; /health flood: ${rate(floods.health)} answers/s${foreign ? `; outside the hub: ${rate(floods.foreign)} answers/s` : ''}` : 'no HTTP floods'}\n`);
    if (HTTP_FLOODS || A_FLOOD) process.stdout.write(`generator CPU per answer${HTTP_FLOODS ? ` (${READY_CLIENT} HTTP client): /ready ${genCpu(floods.ready)} µs, /health ${genCpu(floods.health)} µs${foreign ? `, outside the hub ${genCpu(floods.foreign)} µs` : ''}` : ''}${A_FLOOD ? `${HTTP_FLOODS ? ';' : ':'} A's flood ${genCpu(floods.a)} µs per ack` : ''}\n`);
  } finally {
    progress.stop();
    await foreign?.stop();
    await aHub?.stop();
    await hub?.stop();
    issuer.dispose();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`\nbench:fairness failed: ${(err as Error)?.stack ?? err}\n`);
    process.exit(1);
  },
);
