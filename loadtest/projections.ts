/**
 * Projection throughput and lag.
 *
 *   npm run bench:projections        (node --import tsx loadtest/projections.ts)
 *   options: --events 200000 --orgs 20 --rounds 2 --batch 5000 --lag (also run the lag phase)
 *            --reuse (keep the prefilled database of a previous run when it holds --events events)
 *            --lag-seconds 20 (paced phase of bench:commands)
 *
 * 1. A dedicated database (orghub_bench_projections, recreated) gets a log of --events mixed events
 *    (audit denials and limits, session connects/disconnects of devices, commands), inserted
 *    set-based by the owner in 20k-event transactions.
 * 2. Rounds, alternating: (a) the physical limit: set-based `INSERT … SELECT` from events into
 *    copies of the read-model tables (same shapes, indexes, partitions), one statement per table;
 *    (b) the projector from position zero (the same runners `projections/main.ts` starts, in this
 *    process), with a progress bar, until every checkpoint has consumed every event.
 *    Both phases start alike: the other phase's tables dropped (limit) or emptied (projector),
 *    then a CHECKPOINT, so neither pays for the other's dirty pages or autovacuum. The projector
 *    round also prints its CPU: the projector process's own, and the rest of the machine's.
 *    Targets: projector >= 0.5 x the limit, and >= 20k events/s.
 * 3. With --lag: bench:commands runs as a child against the same database (its own hub and
 *    nats-server), the projector follows, and the lag (age of the oldest unprojected event, the
 *    figure the hub's /ready reports) is sampled every 100 ms during its paced (50 %) phase.
 *    Target: p99 < 1 s.
 */
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { migrate } from '../hub/eventstore/migrate.ts';
import { createPostgresEventStore } from '../hub/eventstore/postgresEventStore.ts';
import { DEFAULT_PROJECTION_WRITER_ROLE } from '../hub/eventstore/roles.ts';
import { createLogger } from '../hub/log.ts';
import { ProgressBar } from '../projections/progress.ts';
import { PROJECTIONS } from '../projections/registry.ts';
import { startProjectionRunner } from '../projections/runner.ts';
import { createSharedReader } from '../projections/sharedReader.ts';
import { createPgEventReader } from '../projections/pgEventReader.ts';
import { readProjectionLag } from '../projections/status.ts';
import { machineCpuSeconds } from './lib/proc.ts';
import { fixed, percentiles, si } from './lib/stats.ts';
import { printTable } from './lib/report.ts';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '200000' },
    orgs: { type: 'string', default: '20' },
    rounds: { type: 'string', default: '2' },
    batch: { type: 'string', default: '5000' },
    lag: { type: 'boolean', default: false },
    reuse: { type: 'boolean', default: false },
    database: { type: 'string', default: 'orghub_bench_projections' },
    'lag-seconds': { type: 'string', default: '20' },
  },
});
const EVENTS = Number(values.events);
const ORGS = Number(values.orgs);
const ROUNDS = Number(values.rounds);
const BATCH = Number(values.batch);
const BASE = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/orghub';
const DB = values.database!;
if (!/^[a-z_][a-z0-9_]*$/.test(DB)) throw new Error('--database must be a plain identifier');
const url = (() => {
  const u = new URL(BASE);
  u.pathname = `/${DB}`;
  return u.toString();
})();
const TABLES = ['orgs', 'audit_log', 'sessions', 'devices', 'device_commands'];

async function countEvents(): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  try {
    await c.connect();
    return Number((await c.query('SELECT count(*) AS n FROM events')).rows[0].n);
  } catch {
    return -1;
  } finally {
    await c.end().catch(() => {});
  }
}

async function recreateDatabase(): Promise<void> {
  const c = new pg.Client({ connectionString: BASE });
  await c.connect();
  await c.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
  await c.query(`CREATE DATABASE ${DB}`);
  await c.end();
  await migrate({ databaseUrl: url, quiet: true });
}

/**
 * The mix, by g % 10: 0-1 a command on a device topic; 2 a device session connects; 3 the session
 * of the previous event disconnects; 4-5 publish.denied (topic); 6 subscribe.denied (pattern);
 * 7 limit.hit; 8 command.denied; 9 session.refreshed.
 */
async function prefill(pool: pg.Pool): Promise<void> {
  const chunk = 20000;
  const bar = new ProgressBar('prefill', EVENTS);
  for (let from = 1; from <= EVENTS; from += chunk) {
    const to = Math.min(EVENTS, from + chunk - 1);
    await pool.query(
      `INSERT INTO events (org_id, stream_id, stream_position, event_id, type, schema_version, data, metadata, recorded_at)
       SELECT org, stream, g, gen_random_uuid(), type, 1, data, metadata, now() - interval '1 hour' + g * interval '1 ms'
       FROM (
         SELECT g, 'bench-' || (g % $3) AS org, g % 10 AS k, 'd' || ((g / 10) % 50) AS dev FROM generate_series($1::bigint, $2::bigint) g
       ) s, LATERAL (SELECT
         CASE WHEN k < 2 THEN 'commands:devices/' || dev || '/commands' ELSE 'audit' END AS stream,
         CASE k WHEN 0 THEN 'device.reboot' WHEN 1 THEN 'device.config' WHEN 2 THEN 'audit.session.connected' WHEN 3 THEN 'audit.session.disconnected'
                WHEN 4 THEN 'audit.publish.denied' WHEN 5 THEN 'audit.publish.denied' WHEN 6 THEN 'audit.subscribe.denied' WHEN 7 THEN 'audit.limit.hit'
                WHEN 8 THEN 'audit.command.denied' ELSE 'audit.session.refreshed' END AS type,
         CASE k WHEN 0 THEN jsonb_build_object('reason', 'bench ' || g) WHEN 1 THEN jsonb_build_object('settings', jsonb_build_object('n', g))
                WHEN 2 THEN jsonb_build_object('transport', 'mqtt', 'via', 'tcp', 'clientId', 'c-' || dev, 'roles', jsonb_build_array('device'), 'jti', 'j' || g)
                WHEN 3 THEN jsonb_build_object('transport', 'mqtt', 'reason', 'client closed', 'durationMs', g % 100000)
                WHEN 6 THEN jsonb_build_object('pattern', 'devices/+/x', 'transport', 'ws')
                WHEN 7 THEN jsonb_build_object('limit', 'rate', 'max', 1000, 'transport', 'mqtt')
                WHEN 8 THEN jsonb_build_object('type', 'device.reboot', 'topic', 'devices/' || dev || '/commands', 'transport', 'ws')
                WHEN 9 THEN jsonb_build_object('exp', g, 'jti', 'j' || g)
                ELSE jsonb_build_object('topic', 'devices/' || dev || '/telemetry', 'transport', 'ws') END AS data,
         jsonb_build_object('actor', CASE WHEN k < 2 THEN 'admin' ELSE dev END, 'node', 'bench-node',
                            'session', 's' || CASE WHEN k = 3 THEN g - 1 ELSE g END, 'correlationId', 'c' || g) AS metadata
       ) e`,
      [from, to, ORGS],
    );
    bar.update(to);
  }
  bar.finish(EVENTS);
}

/** The physical limit: the same rows, computed set-based by Postgres alone, into same-shaped tables. */
async function limitRound(pool: pg.Pool): Promise<number> {
  const c = await pool.connect();
  try {
    for (const t of TABLES) await c.query(`DROP TABLE IF EXISTS lim_${t} CASCADE`);
    for (const t of TABLES) await c.query(`CREATE TABLE lim_${t} (LIKE ${t} INCLUDING ALL)${t === 'audit_log' ? ' PARTITION BY RANGE (recorded_at)' : ''}`);
    await c.query(`CREATE TABLE lim_audit_log_p PARTITION OF lim_audit_log FOR VALUES FROM (MINVALUE) TO (MAXVALUE)`);
    await quiet(c);
    const t0 = performance.now();
    await c.query('BEGIN');
    await c.query(`INSERT INTO lim_orgs (org_id, id, first_event_at, last_event_at) SELECT org_id, org_id, min(recorded_at), max(recorded_at) FROM events GROUP BY org_id`);
    await c.query(
      `INSERT INTO lim_audit_log SELECT org_id, event_id, recorded_at, global_position, substr(type, 7), metadata->>'actor', metadata->>'session',
         COALESCE(data->>'topic', data->>'pattern'),
         CASE WHEN type IN ('audit.session.connected', 'audit.session.disconnected', 'audit.session.refreshed') THEN 'allowed' WHEN type = 'audit.limit.hit' THEN 'limited' ELSE 'denied' END,
         metadata->>'correlationId', metadata->>'node', data
       FROM events WHERE starts_with(type, 'audit.')`,
    );
    await c.query(
      `INSERT INTO lim_device_commands SELECT org_id, event_id, split_part(substr(stream_id, 10), '/', 2), substr(stream_id, 10), type, data, 'issued',
         metadata->>'actor', recorded_at, recorded_at, global_position, metadata->>'idempotencyKey'
       FROM events WHERE starts_with(stream_id, 'commands:')`,
    );
    await c.query(
      `INSERT INTO lim_sessions SELECT org_id, metadata->>'session', min(metadata->>'actor'), max(metadata->>'actor') FILTER (WHERE data->'roles' ? 'device'),
         max(data->>'transport'), max(data->>'clientId'), max(metadata->>'node'),
         max(recorded_at) FILTER (WHERE type = 'audit.session.connected'), max(recorded_at) FILTER (WHERE type = 'audit.session.disconnected'),
         max((data->>'durationMs')::bigint), max(data->>'reason'), max((data->>'code')::int)
       FROM events WHERE type IN ('audit.session.connected', 'audit.session.disconnected') GROUP BY org_id, metadata->>'session'`,
    );
    await c.query(
      `INSERT INTO lim_devices SELECT org_id, device_id, min(connected_at), greatest(max(connected_at), max(disconnected_at)),
         count(*) FILTER (WHERE disconnected_at IS NULL) > 0, count(*) FILTER (WHERE disconnected_at IS NULL), max(id) FILTER (WHERE disconnected_at IS NULL),
         max(transport), max(client_id)
       FROM lim_sessions WHERE device_id IS NOT NULL GROUP BY org_id, device_id`,
    );
    await c.query('COMMIT');
    const seconds = (performance.now() - t0) / 1000;
    // Gone before the next phase, so no autovacuum of these tables runs during it.
    for (const t of TABLES) await c.query(`DROP TABLE IF EXISTS lim_${t} CASCADE`);
    return seconds;
  } finally {
    c.release();
  }
}

/**
 * The same start for both phases: the previous phase's tables are already dropped or emptied, and
 * a CHECKPOINT writes its dirty pages now, not during the next timed phase (which one that is
 * alternates between rounds).
 */
async function quiet(c: pg.ClientBase | pg.Pool): Promise<void> {
  await c.query('CHECKPOINT');
}

async function resetReadModels(pool: pg.Pool): Promise<void> {
  await pool.query(`TRUNCATE orgs, audit_log, sessions, devices, device_commands, projection_checkpoints, projection_dead_letters`);
}

/** The projector from zero, in this process; returns seconds until every checkpoint consumed every event. */
async function projectorRound(pool: pg.Pool, label: string): Promise<number> {
  await resetReadModels(pool);
  const store = createPostgresEventStore({ databaseUrl: url, poolSize: 6, queryTimeoutMs: 120_000 });
  const log = createLogger('warn');
  const wpool = new pg.Pool({ connectionString: url, max: 6 });
  const bar = new ProgressBar(label, EVENTS);
  await quiet(pool);
  const cpu0 = process.cpuUsage();
  const machine0 = machineCpuSeconds();
  const t0 = performance.now();
  const reader = createPgEventReader({ databaseUrl: url });
  const shared = createSharedReader(reader.read);
  const runners = PROJECTIONS.map((projection) =>
    startProjectionRunner({ store, pool: wpool, databaseUrl: url, writerRole: DEFAULT_PROJECTION_WRITER_ROLE, projection, batchSize: BATCH, pollMs: 20, lockPollMs: 200, log, read: shared.reader() }),
  );
  let seconds = 0;
  for (;;) {
    const { rows } = await pool.query<{ n: string; k: number }>('SELECT coalesce(min(events_applied), 0)::text AS n, count(*)::int AS k FROM projection_checkpoints');
    const done = rows[0].k === PROJECTIONS.length ? Number(rows[0].n) : 0;
    bar.update(done);
    if (done >= EVENTS) {
      seconds = (performance.now() - t0) / 1000;
      bar.finish(done);
      const own = process.cpuUsage(cpu0);
      const node = (own.user + own.system) / 1e6;
      const machine = machineCpuSeconds() - machine0;
      process.stderr.write(`${label}: CPU over ${fixed(seconds)} s: projector process (Node) ${fixed(node)} s, rest of the machine (Postgres, mostly) ${fixed(machine - node)} s\n`);
      break;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  process.stderr.write(`${label}: busy per projection (fold + SQL + commit): ${runners.map((r) => `${r.status().name} ${fixed(r.status().busyMs / 1000)} s`).join(', ')}\n`);
  await Promise.all(runners.map((r) => r.stop()));
  await reader.close();
  await store.close();
  await wpool.end();
  const dead = (await pool.query('SELECT count(*)::int AS n FROM projection_dead_letters')).rows[0].n;
  if (dead) throw new Error(`${dead} dead letters in the bench: the fold and the prefill disagree`);
  await resetReadModels(pool); // emptied before the next phase, like the limit's tables
  return seconds;
}

/** bench:commands as a child on the same database while the projector follows; lag sampled during its paced phase. */
async function lagPhase(pool: pg.Pool): Promise<{ samples: number[]; commandsOut: string }> {
  await resetReadModels(pool);
  await pool.query('TRUNCATE events, streams');
  const store = createPostgresEventStore({ databaseUrl: url, poolSize: 6 });
  const wpool = new pg.Pool({ connectionString: url, max: 6 });
  const log = createLogger('warn');
  const reader = createPgEventReader({ databaseUrl: url });
  const shared = createSharedReader(reader.read);
  const runners = PROJECTIONS.map((projection) =>
    startProjectionRunner({ store, pool: wpool, databaseUrl: url, writerRole: DEFAULT_PROJECTION_WRITER_ROLE, projection, batchSize: 2000, pollMs: 100, lockPollMs: 1000, log, read: shared.reader() }),
  );
  const child = spawn(process.execPath, ['--import', 'tsx', 'loadtest/commands.ts', '--total', '20000', '--warmup', '2000', '--paced-seconds', values['lag-seconds']!, '--pgbench-seconds', '5'], {
    env: { ...process.env, DATABASE_URL: url },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  let sampling = false;
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d: Buffer) => {
    err += d;
    const s = d.toString();
    if (/paced 50%/.test(s) && !/generator send lag/.test(s)) sampling = true;
    if (/paced 50%: generator send lag/.test(s)) sampling = false;
    process.stderr.write(d);
  });
  const samples: number[] = [];
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  let done = false;
  void exited.then(() => (done = true));
  while (!done) {
    if (sampling) {
      const lags = await readProjectionLag(pool, 1);
      samples.push(Math.max(...lags.map((l) => l.behindSeconds)));
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const code = await exited;
  await Promise.all(runners.map((r) => r.stop()));
  await reader.close();
  await store.close();
  await wpool.end();
  if (code !== 0) throw new Error(`bench:commands failed (${code}):\n${err.slice(-2000)}`);
  return { samples, commandsOut: out };
}

async function main(): Promise<void> {
  process.stderr.write(`bench:projections: ${EVENTS} events, ${ORGS} orgs, ${ROUNDS} rounds, batch ${BATCH}, database ${DB}\n`);
  const reusable = values.reuse && (await countEvents()) === EVENTS;
  if (!reusable) await recreateDatabase();
  else await migrate({ databaseUrl: url, quiet: true });
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  try {
    if (!reusable) {
      await prefill(pool);
      await pool.query('VACUUM ANALYZE events');
    }
    const limits: number[] = [];
    const projector: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      // alternate the order, so neither always runs on a warmer cache
      if (r % 2 === 0) {
        limits.push(await limitRound(pool));
        projector.push(await projectorRound(pool, `projector round ${r + 1}`));
      } else {
        projector.push(await projectorRound(pool, `projector round ${r + 1}`));
        limits.push(await limitRound(pool));
      }
      process.stderr.write(`round ${r + 1}: limit ${fixed(limits[r])} s, projector ${fixed(projector[r])} s\n`);
    }
    if (ROUNDS > 0) {
      const best = (xs: number[]) => Math.min(...xs);
      const limitRate = EVENTS / best(limits);
      const projRate = EVENTS / best(projector);
      const ratio = projRate / limitRate;
      process.stdout.write(`\n## bench:projections (${new Date().toISOString()}, ${EVENTS} events, ${ORGS} orgs, batch ${BATCH}, best of ${ROUNDS})\n\n`);
      printTable(
        ['run', 'seconds (each round)', 'events/s (best)', 'target'],
        [
          ['INSERT … SELECT (physical limit)', limits.map((x) => fixed(x)).join(', '), si(limitRate), 'ceiling'],
          ['projector from zero (4 projections)', projector.map((x) => fixed(x)).join(', '), si(projRate), `>= 0.5 x limit: ${fixed(ratio, 2)}x ${ratio >= 0.5 ? 'PASS' : 'FAIL'}; >= 20k/s: ${projRate >= 20000 ? 'PASS' : 'FAIL'}`],
        ],
      );
    }
    if (values.lag) {
      const { samples, commandsOut } = await lagPhase(pool);
      const [p50, p99, max] = percentiles(samples, [50, 99, 100]);
      process.stdout.write(`\nsteady-state lag while bench:commands ran its paced 50 % phase (${samples.length} samples every 100 ms): p50 ${fixed(p50, 3)} s, p99 ${fixed(p99, 3)} s, max ${fixed(max, 3)} s; target p99 < 1 s: ${p99 < 1 ? 'PASS' : 'FAIL'}\n`);
      process.stdout.write(commandsOut);
    }
  } finally {
    await pool.end();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`\nbench:projections failed: ${(err as Error)?.stack ?? err}\n`);
    process.exit(1);
  },
);
