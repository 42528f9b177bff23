import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { migrate } from '../hub/eventstore/migrate.ts';

const MAIN = fileURLToPath(new URL('./main.ts', import.meta.url));
const REBUILD = fileURLToPath(new URL('./rebuildCli.ts', import.meta.url));
export const BASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/orghub';

export interface TestDatabase {
  url: string;
  name: string;
  pool: pg.Pool;
  drop(): Promise<void>;
}

/**
 * A fresh, migrated database per test file: projections are global (one checkpoint and one lock
 * per name), so suites that run projectors must not share a database with each other.
 */
export async function createTestDatabase(prefix: string): Promise<TestDatabase> {
  const name = `orghub_t_${prefix}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: BASE_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const u = new URL(BASE_URL);
  u.pathname = `/${name}`;
  const url = u.toString();
  // Roles are cluster-wide and migrate() re-grants them; its advisory lock is per database, so
  // parallel suites migrating different databases are serialized here, on the base database,
  // under the key migrate() itself takes there.
  await admin.query('SELECT pg_advisory_lock(7241865325823965)');
  try {
    await migrate({ databaseUrl: url, quiet: true });
  } finally {
    await admin.query('SELECT pg_advisory_unlock(7241865325823965)').catch(() => {});
    await admin.end();
  }
  const pool = new pg.Pool({ connectionString: url, max: 3 });
  // An idle connection cut by the server (a restart, or DROP DATABASE … FORCE at the end) must not
  // crash the test file with an unhandled 'error'.
  pool.on('error', () => {});
  return {
    url, name, pool,
    async drop() {
      await pool.end();
      const c = new pg.Client({ connectionString: BASE_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

export interface ProjectorProcess {
  child: ChildProcess;
  output(): string;
  /** Resolves with the first log line (parsed) matching; rejects after timeoutMs. */
  waitForLog(pred: (line: Record<string, any>) => boolean, timeoutMs?: number): Promise<Record<string, any>>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** `projections/main.ts` as a real child process (pino JSON lines on stdout). */
export function startProjector(databaseUrl: string, env: Record<string, string> = {}): ProjectorProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN], {
    env: { ...process.env, DATABASE_URL: databaseUrl, ORGHUB_LOG_LEVEL: 'info', ORGHUB_PROJECTOR_POLL_MS: '20', ORGHUB_PROJECTOR_LOCK_POLL_MS: '200', ORGHUB_PROJECTOR_RETENTION_INTERVAL_S: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const lines: Record<string, any>[] = [];
  const waiters: { pred: (l: Record<string, any>) => boolean; resolve: (l: Record<string, any>) => void }[] = [];
  let partial = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d;
    partial += d;
    const parts = partial.split('\n');
    partial = parts.pop()!;
    for (const p of parts) {
      let l: Record<string, any>;
      try {
        l = JSON.parse(p);
      } catch {
        continue;
      }
      lines.push(l);
      for (const w of [...waiters]) if (w.pred(l)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(l);
      }
    }
  });
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    child,
    output: () => out,
    waitForLog(pred, timeoutMs = 30000) {
      const found = lines.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve: (l: Record<string, any>) => (clearTimeout(t), resolve(l)) };
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`projector log line not seen in ${timeoutMs} ms; output:\n${out.slice(-3000)}`));
        }, timeoutMs);
        waiters.push(w);
      });
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

/** `npm run projections:rebuild -- <spec>` as a child process; resolves with its exit code and output. */
export function runRebuild(databaseUrl: string, spec: string, extra: string[] = []): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return startRebuild(databaseUrl, spec, extra).done;
}

/** The same, with the child at hand (to kill it mid-way). */
export function startRebuild(databaseUrl: string, spec: string, extra: string[] = []): { child: ChildProcess; done: Promise<{ code: number | null; stdout: string; stderr: string }> } {
  const child = spawn(process.execPath, ['--import', 'tsx', REBUILD, spec, ...extra], { env: { ...process.env, DATABASE_URL: databaseUrl }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  return { child, done: new Promise((resolve) => child.once('exit', (code) => resolve({ code, stdout, stderr }))) };
}

/** Shared with the hub's tests (hub/testing/until.ts). */
export { waitUntil } from '../hub/testing/until.ts';

/** md5 of an ordered text dump of `table`'s rows for the given orgs (as the owner, which sees all rows). */
export async function tableHash(pool: pg.Pool, table: string, orgs: string[]): Promise<{ rows: number; md5: string | null }> {
  const { rows } = await pool.query(`SELECT count(*)::int AS n, md5(string_agg(t::text, E'\\n' ORDER BY t::text)) AS h FROM ${table} t WHERE org_id = ANY($1)`, [orgs]);
  return { rows: rows[0].n, md5: rows[0].h };
}
