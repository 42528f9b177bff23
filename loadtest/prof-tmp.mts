import pg from 'pg';
import { performance } from 'node:perf_hooks';
import { PROJECTIONS } from '../projections/registry.ts';
import { applyBatch, LIVE, advanceCheckpoint } from '../projections/apply.ts';
import { createPgEventReader } from '../projections/pgEventReader.ts';
import { START } from '../hub/eventstore/eventStore.ts';
const url = 'postgres://postgres@127.0.0.1:5432/orghub_bench_prof';
const reader = createPgEventReader({ databaseUrl: url });
const pool = new pg.Pool({ connectionString: url });
await pool.query('TRUNCATE orgs, audit_log, sessions, devices, device_commands, projection_checkpoints, projection_dead_letters');
let after = START;
const T: Record<string, number> = { read: 0 };
for (;;) {
  let t = performance.now();
  const batch = await reader.read(after, 5000);
  T.read += performance.now() - t;
  if (!batch.events.length) break;
  for (const p of PROJECTIONS) {
    const c = await pool.connect();
    if (!(c as any).wrapped) { (c as any).wrapped = true; const orig = c.query.bind(c); (c as any).query = async (sql: any, params?: any) => { const t0 = performance.now(); try { return await orig(sql, params); } finally { const k = p.name + ':' + String(sql).slice(0, 40); T[k] = (T[k] ?? 0) + performance.now() - t0; } }; }
    t = performance.now();
    await c.query('BEGIN; SET LOCAL ROLE orghub_projection_writer; SET LOCAL synchronous_commit = off');
    await applyBatch(c, p, batch.events, LIVE, new Set());
    await advanceCheckpoint(c, p.name, 1, after, batch.next, batch.events.length, 0);
    await c.query('COMMIT');
    T[p.name] = (T[p.name] ?? 0) + performance.now() - t;
    c.release();
  }
  after = batch.next;
  if (batch.caughtUp) break;
}
console.log(Object.fromEntries(Object.entries(T).map(([k, v]) => [k, Math.round(v)])));
await reader.close(); await pool.end();
