/**
 * Durable command acks: many WebSocket connections send keyed `cmd` frames to a real hub child
 * process (dedicated nats-server, the machine's Postgres); each `ok` means the event is committed.
 * In the same run, pgbench runs the event store's own append, 10 events per transaction, as the
 * ceiling to compare with; then a paced run at half the measured maximum gives the latency target,
 * followed by its peer: the same pgbench append paced (`-R`) at the same events/s (Postgres alone).
 *
 *   npm run bench:commands        (node --import tsx loadtest/commands.ts)
 *   options: --conns 64 --inflight 8 --total 40000 --warmup 4000 --paced-seconds 10
 *            --pgbench-seconds 10 --payload 128 --orgs 8 --paced-rate <commands/s, default half the max>
 *
 * Targets (issue 3): max acks/s >= 0.8 x pgbench events/s; ack p99 < 10 ms at half the max rate.
 */
import { parseArgs } from 'node:util';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import WebSocket from 'ws';
import { migrate } from '../hub/eventstore/migrate.ts';
import { openLoop } from './lib/openLoop.ts';
import { startChild } from './lib/proc.ts';
import { startHub, REPO_ROOT, type HubServer } from './lib/servers.ts';
import { createBenchIssuer } from './lib/tokens.ts';
import { percentiles, fixed, si } from './lib/stats.ts';
import { Progress, printTable } from './lib/report.ts';

const { values } = parseArgs({
  options: {
    conns: { type: 'string', default: '64' },
    inflight: { type: 'string', default: '8' },
    total: { type: 'string', default: '40000' },
    warmup: { type: 'string', default: '4000' },
    'paced-seconds': { type: 'string', default: '10' },
    'pgbench-seconds': { type: 'string', default: '10' },
    payload: { type: 'string', default: '128' },
    orgs: { type: 'string', default: '8' },
    'paced-rate': { type: 'string' },
    'compare-turns': { type: 'string', default: '0' },
  },
});
/**
 * `--compare-turns N`: only the max-rate phase, N rounds against a hub with fair turns on (the
 * default ORGHUB_WS_TURN_BUDGET_MS) and N against one with them off (0), alternating, each on a
 * fresh hub; prints the ratio of the median acks/s (the scheduler's cost when orgs share fairly).
 */
const COMPARE_TURNS = Number(values['compare-turns']);
const CONNS = Number(values.conns);
const IN_FLIGHT = Number(values.inflight);
const TOTAL = Number(values.total);
const WARMUP = Number(values.warmup);
const PACED_S = Number(values['paced-seconds']);
const PGBENCH_S = Number(values['pgbench-seconds']);
const PAYLOAD = Number(values.payload);
const ORGS = Number(values.orgs);
/** Commands/s for the paced phase; default half the measured max (the latency target). */
const PACED_RATE = values['paced-rate'] === undefined ? undefined : Number(values['paced-rate']);
if (PACED_RATE !== undefined && !(PACED_RATE > 0)) throw new Error('--paced-rate must be a positive number');
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/orghub';
const PGBENCH_FILE = 'loadtest/pgbench/append10.sql';
for (const [k, v] of Object.entries({ CONNS, IN_FLIGHT, TOTAL, WARMUP, PACED_S, PGBENCH_S, PAYLOAD, ORGS })) {
  if (!Number.isInteger(v) || v < (k === 'WARMUP' ? 0 : 1)) throw new Error(`--${k.toLowerCase()} must be a positive integer`);
}

const progress = new Progress();
const run = randomUUID().slice(0, 8);

/** One connection that pipelines commands; each answer resolves the request with its id. */
class CmdConn {
  private readonly pending = new Map<number, (ok: boolean) => void>();
  private nextId = 1;
  private readonly pad: string;
  closed = false;

  private constructor(private readonly ws: WebSocket, readonly index: number) {
    // `data` of about PAYLOAD bytes once JSON-encoded: {"settings":{"p":"xxx…"}}
    this.pad = 'x'.repeat(Math.max(1, PAYLOAD - 20));
    ws.on('message', (buf: Buffer) => {
      const v = JSON.parse(buf.toString());
      for (const f of Array.isArray(v) ? v : [v]) {
        const done = this.pending.get(f.id);
        if (!done) continue;
        this.pending.delete(f.id);
        done(f.op === 'ok');
        if (f.op !== 'ok' && errorSamples.length < 3) errorSamples.push(JSON.stringify(f));
      }
    });
    ws.on('close', (code: number, reason: Buffer) => {
      if (!closing && errorSamples.length < 3) errorSamples.push(`connection ${this.index} closed (${code} ${reason.toString()}) with ${this.pending.size} pending`);
      this.closed = true;
      for (const done of this.pending.values()) done(false);
      this.pending.clear();
    });
    ws.on('error', (err) => {
      if (!closing && errorSamples.length < 3) errorSamples.push(`connection ${this.index} error: ${err.message}`);
    });
  }

  static open(url: string, token: string, index: number): Promise<CmdConn> {
    const ws = new WebSocket(url, ['orghub.v1.json'], { headers: { authorization: `Bearer ${token}` }, perMessageDeflate: false });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new CmdConn(ws, index)));
      ws.once('error', reject);
    });
  }

  /** Sends one command with a unique key; resolves true on `ok` (durably recorded). */
  send(seq: number): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.ws.send(`{"op":"cmd","id":${id},"type":"device.config","topic":"devices/d${this.index}/commands","key":"${run}-${this.index}-${seq}","data":{"settings":{"p":"${this.pad}"}}}`);
    });
  }

  close(): void {
    closing = true;
    this.ws.close();
  }
}

const errorSamples: string[] = [];
/** Set once the bench closes its own connections, so only unexpected closes are reported. */
let closing = false;

interface PhaseResult {
  name: string;
  sent: number;
  acked: number;
  errors: number;
  seconds: number;
  latencies: number[];
}

/** Closed loop: every connection keeps IN_FLIGHT commands outstanding until `total` were sent. */
async function saturate(name: string, conns: CmdConn[], total: number, seqBase: number): Promise<PhaseResult> {
  let sent = 0;
  let acked = 0;
  let errors = 0;
  const latencies: number[] = [];
  progress.start(name, () => ({ delivered: acked, note: `errors=${errors}` }));
  const t0 = performance.now();
  await Promise.all(
    conns.flatMap((c) =>
      Array.from({ length: IN_FLIGHT }, async () => {
        while (sent < total && !c.closed) {
          const seq = seqBase + sent++;
          const s = performance.now();
          if (await c.send(seq)) {
            acked++;
            latencies.push(performance.now() - s);
          } else errors++;
        }
      }),
    ),
  );
  const seconds = (performance.now() - t0) / 1000;
  progress.stop();
  return { name, sent, acked, errors, seconds, latencies };
}

/**
 * Open loop at `rate` commands/s spread round-robin over the connections. Latency is measured from
 * each command's scheduled time, so a stall is charged to every command it delays.
 */
async function paced(name: string, send: (seq: number) => Promise<boolean>, rate: number, seconds: number, seqBase: number): Promise<PhaseResult> {
  const latencies: number[] = [];
  let acked = 0;
  let errors = 0;
  const total = Math.floor(rate * seconds);
  const sendLag: number[] = [];
  const fromSend: number[] = [];
  progress.start(name, () => ({ delivered: acked, note: `target=${Math.round(rate)}/s errors=${errors}` }));
  const t0 = await openLoop(rate, total, (i, scheduled) => {
    const sentAt = performance.now();
    sendLag.push(sentAt - scheduled);
    return send(seqBase + i).then((ok) => {
      if (ok) {
        acked++;
        fromSend.push(performance.now() - sentAt);
        latencies.push(performance.now() - scheduled);
      } else errors++;
    });
  });
  const elapsed = (performance.now() - t0) / 1000;
  progress.stop();
  const [l50, l99] = percentiles(sendLag, [50, 99]);
  const [s50, s99] = percentiles(fromSend, [50, 99]);
  progress.log(`${name}: generator send lag (send time - scheduled) p50 ${fixed(l50)} ms, p99 ${fixed(l99)} ms; ack latency from send p50 ${fixed(s50)} ms, p99 ${fixed(s99)} ms`);
  return { name, sent: total, acked, errors, seconds: elapsed, latencies };
}

/**
 * Runs pgbench on the event store's append script (8 clients, 2 threads) with `args`; returns its
 * output. The database is DATABASE_URL's (pgbench takes a connection URI as its dbname), the same
 * one the hub under test writes to.
 */
async function runPgbench(label: string, args: string[]): Promise<string> {
  progress.start(label);
  const child = startChild('pgbench', 'pgbench', ['-n', '-c', '8', '-j', '2', ...args, '-f', PGBENCH_FILE, DATABASE_URL], { cwd: REPO_ROOT });
  const code = await new Promise<number | null>((resolve) => child.proc.once('exit', (c) => resolve(c)));
  progress.stop();
  const out = child.tail();
  if (code !== 0) throw new Error(`${label} failed (exit ${code}):\n${out}`);
  return out;
}

/**
 * The latency peer: the same pgbench append (10 events per transaction, 8 clients), paced with
 * `pgbench -R` at the paced phase's events/s, nothing of orghub in the path. Latency per
 * transaction is pgbench's own (`-l`: elapsed time plus schedule lag, i.e. from the scheduled start,
 * as the paced phase measures), every event of a transaction counted once per transaction. The
 * first second is dropped (each pgbench session plans the function on its first call). pgbench -R
 * schedules a Poisson process, somewhat burstier than the paced phase's even spacing.
 */
async function pgbenchPaced(eventsPerSec: number): Promise<PhaseResult> {
  const dir = mkdtempSync(join(tmpdir(), 'orghub-pgbench-'));
  const tps = eventsPerSec / 10;
  try {
    await runPgbench(`pgbench -R ${fixed(tps, 0)} -T ${PACED_S + 1}`, ['-T', String(PACED_S + 1), '-R', String(tps), '-l', '--log-prefix', join(dir, 'pgb')]);
    // log line: client transaction_no time_us script_no epoch_s epoch_us schedule_lag_us
    const rows: Array<[number, number]> = [];
    for (const f of readdirSync(dir)) {
      for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
        const c = line.split(' ');
        if (c.length < 7) continue;
        rows.push([Number(c[4]) * 1e6 + Number(c[5]), (Number(c[2]) + Number(c[6])) / 1000]);
      }
    }
    const start = Math.min(...rows.map((r) => r[0]));
    const kept = rows.filter((r) => r[0] >= start + 1e6);
    const seconds = kept.length ? (Math.max(...kept.map((r) => r[0])) - start) / 1e6 - 1 : 0;
    return { name: `peer: pgbench append10 -R ${fixed(tps, 0)}`, sent: kept.length * 10, acked: kept.length * 10, errors: 0, seconds, latencies: kept.map((r) => r[1]) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** pgbench of the adapter's append, 10 single-event appends per transaction; returns tps. */
async function pgbench(): Promise<number> {
  const out = await runPgbench(`pgbench -T ${PGBENCH_S}`, ['-T', String(PGBENCH_S)]);
  const m = /tps = ([\d.]+) \(without initial connection time\)/.exec(out);
  if (!m) throw new Error(`pgbench printed no tps:\n${out}`);
  return Number(m[1]);
}

async function recordedCount(orgs: string[]): Promise<number> {
  const c = new pg.Client({ connectionString: DATABASE_URL });
  await c.connect();
  try {
    await c.query('BEGIN; SET LOCAL ROLE orghub_projector');
    const r = await c.query<{ n: string }>(`SELECT count(*)::text AS n FROM events WHERE org_id = ANY($1) AND stream_id LIKE 'commands:%'`, [orgs]);
    await c.query('ROLLBACK');
    return Number(r.rows[0].n);
  } finally {
    await c.end();
  }
}

async function compareTurns(): Promise<void> {
  progress.log(`bench:commands run ${run}: fair turns on/off, ${COMPARE_TURNS} rounds each, ${CONNS} connections x ${IN_FLIGHT} in flight, ${TOTAL} commands per round`);
  await migrate({ quiet: true });
  const issuer = await createBenchIssuer();
  const rates: Record<'on' | 'off', number[]> = { on: [], off: [] };
  const queued: Record<'on' | 'off', number[]> = { on: [], off: [] };
  let seq = 0;
  try {
    for (let round = 0; round < COMPARE_TURNS; round++) {
      for (const mode of ['on', 'off'] as const) {
        progress.start(`round ${round + 1}: fair turns ${mode}`);
        const hub = await startHub(issuer.env, { ORGHUB_LOG_LEVEL: 'warn', ...(mode === 'off' ? { ORGHUB_WS_TURN_BUDGET_MS: '0' } : {}) });
        const conns: CmdConn[] = [];
        try {
          const orgs = Array.from({ length: ORGS }, (_, i) => `bench-cmd-${run}-${i}`);
          for (let i = 0; i < CONNS; i++) conns.push(await CmdConn.open(hub.wsUrl, await issuer.token(orgs[i % ORGS], `admin-${i}`), i));
          if (WARMUP > 0) await saturate('warm-up', conns, WARMUP, seq);
          seq += WARMUP;
          const r = await saturate(`max rate, turns ${mode}`, conns, TOTAL, seq);
          seq += TOTAL;
          rates[mode].push(r.acked / r.seconds);
          const m = await (await fetch(`${hub.httpUrl}/metrics`)).text();
          queued[mode].push(Number(/^orghub_ws_frames_queued_total (\S+)$/m.exec(m)?.[1] ?? NaN));
        } finally {
          for (const c of conns) c.close();
          await hub.stop();
          progress.stop();
        }
      }
    }
  } finally {
    issuer.dispose();
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
  process.stdout.write(`\n## bench:commands --compare-turns ${COMPARE_TURNS} (${new Date().toISOString()}, ${CONNS} conns x ${IN_FLIGHT} in flight, ${TOTAL} commands per round)\n\n`);
  printTable(
    ['fair turns', 'acks/s per round', 'median', 'frames queued per round'],
    (['on', 'off'] as const).map((m) => [m, rates[m].map((x) => si(x)).join(', '), si(med(rates[m])), queued[m].join(', ')]),
  );
  process.stdout.write(`\non / off (medians): ${fixed(med(rates.on) / med(rates.off), 3)}\n`);
}

async function main(): Promise<void> {
  if (COMPARE_TURNS > 0) return compareTurns();
  progress.log(`bench:commands run ${run}: ${CONNS} connections x ${IN_FLIGHT} in flight, ${TOTAL} commands, ~${PAYLOAD} B data`);
  await migrate({ quiet: true });
  const issuer = await createBenchIssuer();
  let hub: HubServer | undefined;
  const conns: CmdConn[] = [];
  try {
    progress.start('starting nats-server and hub');
    hub = await startHub(issuer.env, { ORGHUB_LOG_LEVEL: 'warn' });
    const orgs = Array.from({ length: ORGS }, (_, i) => `bench-cmd-${run}-${i}`);
    for (let i = 0; i < CONNS; i++) conns.push(await CmdConn.open(hub.wsUrl, await issuer.token(orgs[i % ORGS], `admin-${i}`), i));
    progress.stop();

    // each phase has its own range of sequence numbers, so every key is unique (no duplicate shortcut)
    const warm = WARMUP > 0 ? await saturate('warm-up', conns, WARMUP, 0) : undefined;
    const max = await saturate('max rate', conns, TOTAL, WARMUP);
    const maxRate = max.acked / max.seconds;
    progress.log(`max: ${Math.round(maxRate)} acks/s`);
    const tps = await pgbench();
    const pgEvents = tps * 10;
    progress.log(`pgbench: ${fixed(tps, 1)} tps = ${Math.round(pgEvents)} events/s`);
    const halfRate = PACED_RATE ?? maxRate / 2;
    const send = (seq: number) => conns[seq % conns.length].send(seq);
    const half = await paced(PACED_RATE ? `paced ${PACED_RATE}/s` : 'paced 50%', send, halfRate, PACED_S, TOTAL + WARMUP);
    const peer = await pgbenchPaced(halfRate);

    const recorded = await recordedCount(orgs);
    const expected = max.acked + half.acked + (warm?.acked ?? 0);
    for (const c of conns) c.close();

    const row = (r: PhaseResult, target: string) => {
      const [p50, p99, p999] = percentiles(r.latencies, [50, 99, 99.9]);
      return [r.name, r.acked, r.errors, fixed(r.seconds, 1), si(r.acked / r.seconds), fixed(p50), fixed(p99), fixed(p999), target];
    };
    const [, halfP99] = percentiles(half.latencies, [50, 99]);
    const ratio = maxRate / pgEvents;
    process.stdout.write(`\n## bench:commands (${new Date().toISOString()}, ${CONNS} conns x ${IN_FLIGHT} in flight, ~${PAYLOAD} B data)\n\n`);
    printTable(
      ['phase', 'acked', 'errors', 's', 'acks/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'target'],
      [
        row(max, `>= 0.8 x pgbench: ${fixed(ratio, 2)}x ${ratio >= 0.8 ? 'PASS' : 'FAIL'}`),
        row(half, PACED_RATE ? `(not 50 %: --paced-rate)` : `p99 < 10 ms: ${halfP99 < 10 ? 'PASS' : 'FAIL'}`),
        [`pgbench append10 (-c 8 -j 2 -T ${PGBENCH_S})`, '', '', String(PGBENCH_S), `${si(pgEvents)} events/s (${fixed(tps, 0)} tps x 10)`, '', '', '', 'ceiling'],
        row(peer, `peer, same events/s: p99 ${fixed(percentiles(peer.latencies, [99])[0])} ms`),
      ],
    );
    process.stdout.write(`\nrecorded in the store: ${recorded} of ${expected} acked (${recorded === expected ? 'all' : 'MISMATCH'})\n`);
    if (errorSamples.length) process.stdout.write(`errors, first ones: ${errorSamples.join(' ')}\n`);
  } finally {
    progress.stop();
    for (const c of conns) c.close();
    await hub?.stop();
    issuer.dispose();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`\nbench:commands failed: ${(err as Error)?.stack ?? err}\n`);
    process.exit(1);
  },
);
