import pg from 'pg';
import { performance } from 'node:perf_hooks';
import { createPostgresEventStore } from '../hub/eventstore/postgresEventStore.ts';
import { foldAudit } from '../projections/audit/auditFold.ts';
import { unnestInsert } from '../projections/sql.ts';
const url = 'postgres://postgres@127.0.0.1:5432/orghub_bench_projections';
const store = createPostgresEventStore({ databaseUrl: url });
const pool = new pg.Pool({ connectionString: url });
const batch = await store.readAll({ batchSize: 5000 });
const { rows } = foldAudit(batch.events);
const cols = ['org_id','id','recorded_at','global_position','type','actor','session','topic','outcome','correlation_id','node','data'];
const types = ['text','uuid','timestamptz','bigint','text','text','text','text','text','text','text','jsonb'];
const C = cols.map((n, i) => ({ name: n, type: types[i], get: (r: any) => r[n] }));
const objRows = rows.map((r) => ({ ...r, data: JSON.parse(r.data) }));
const c = await pool.connect();
const time = async (label: string, build: () => { sql: string; params: unknown[] }) => {
  let best = 1e9, bestB = 1e9;
  for (let i = 0; i < 4; i++) {
    await c.query('TRUNCATE audit_log');
    let t = performance.now();
    const q = build();
    const b = performance.now() - t;
    t = performance.now();
    await c.query(q.sql, q.params);
    best = Math.min(best, performance.now() - t); bestB = Math.min(bestB, b);
  }
  console.log(label, 'build', bestB.toFixed(0), 'insert', best.toFixed(0));
};
await time('array literals', () => unnestInsert('audit_log', C, rows, ''));
await time('jsonb_to_recordset', () => ({ sql: `INSERT INTO audit_log (${cols}) SELECT ${cols} FROM jsonb_to_recordset($1::jsonb) AS x(${cols.map((n, i) => `${n} ${types[i]}`)})`, params: [JSON.stringify(objRows)] }));
await time('json_populate_recordset', () => ({ sql: `INSERT INTO audit_log SELECT * FROM json_populate_recordset(NULL::audit_log, $1::json)`, params: [JSON.stringify(objRows)] }));
await time('json_to_recordset', () => ({ sql: `INSERT INTO audit_log (${cols}) SELECT ${cols} FROM json_to_recordset($1::json) AS x(${cols.map((n, i) => `${n} ${types[i]}`)})`, params: [JSON.stringify(objRows)] }));
c.release();
await store.close(); await pool.end();
