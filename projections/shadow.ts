import type pg from 'pg';
import { ident } from './sql.ts';

/** Suffix of the tables a rebuild writes into while the canonical ones keep serving. */
export const SHADOW_SUFFIX = '__rebuild';

export function shadowName(table: string): string {
  return `${table}${SHADOW_SUFFIX}`;
}

/**
 * Creates the shadow of a canonical read-model table, as the owner: same columns, defaults,
 * constraints and indexes (LIKE … INCLUDING ALL, partitioned the same way), RLS ENABLE + FORCE,
 * every policy and every grant copied from the catalog, so the shadow is exactly as protected as
 * the table it replaces. Partitions of a shadow are created on demand like the canonical ones.
 */
export async function createShadowTable(c: pg.ClientBase, table: string): Promise<void> {
  const shadow = shadowName(table);
  const { rows: rel } = await c.query<{ oid: number; relkind: string; partkey: string | null; relacl: string[] | null }>(
    `SELECT c.oid, c.relkind, CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partkey, c.relacl::text[] AS relacl
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relname = $1`,
    [table],
  );
  if (!rel[0]) throw new Error(`no table ${table}`);
  await c.query(`DROP TABLE IF EXISTS ${ident(shadow)} CASCADE`);
  await c.query(`CREATE TABLE ${ident(shadow)} (LIKE ${ident(table)} INCLUDING ALL)${rel[0].partkey ? ` PARTITION BY ${rel[0].partkey}` : ''}`);
  await c.query(`ALTER TABLE ${ident(shadow)} ENABLE ROW LEVEL SECURITY`);
  await c.query(`ALTER TABLE ${ident(shadow)} FORCE ROW LEVEL SECURITY`);
  const { rows: policies } = await c.query<{ policyname: string; permissive: string; roles: string[]; cmd: string; qual: string | null; with_check: string | null }>(
    `SELECT policyname, permissive, roles::text[] AS roles, cmd, qual, with_check FROM pg_policies WHERE schemaname = 'public' AND tablename = $1`,
    [table],
  );
  for (const p of policies) {
    const roles = p.roles.map((r) => (r === 'public' ? 'PUBLIC' : ident(r))).join(', ');
    await c.query(
      `CREATE POLICY ${ident(p.policyname)} ON ${ident(shadow)} AS ${p.permissive} FOR ${p.cmd} TO ${roles}` +
        (p.qual ? ` USING (${p.qual})` : '') +
        (p.with_check ? ` WITH CHECK (${p.with_check})` : ''),
    );
  }
  const { rows: grants } = await c.query<{ grantee: string; privilege_type: string }>(
    `SELECT r.rolname AS grantee, a.privilege_type FROM pg_class c, aclexplode(c.relacl) a JOIN pg_roles r ON r.oid = a.grantee
     WHERE c.oid = $1 AND a.grantee <> c.relowner`,
    [rel[0].oid],
  );
  for (const g of grants) await c.query(`GRANT ${g.privilege_type} ON ${ident(shadow)} TO ${ident(g.grantee)}`);
}

interface IndexInfo { name: string; shape: string }

/** Index definitions without their own and their table's names, to pair a shadow index with its canonical twin. */
async function indexes(c: pg.ClientBase, table: string): Promise<IndexInfo[]> {
  const { rows } = await c.query<{ name: string; def: string }>(
    `SELECT ci.relname AS name, pg_get_indexdef(i.indexrelid) AS def FROM pg_index i JOIN pg_class ci ON ci.oid = i.indexrelid
     WHERE i.indrelid = to_regclass($1)`,
    [`public.${table}`],
  );
  return rows.map((r) => ({ name: r.name, shape: r.def.replace(/INDEX \S+ ON (ONLY )?\S+ /, 'INDEX ON ') }));
}

/**
 * Inside the caller's transaction (canonical tables already locked): drops the canonical table and
 * gives the shadow its name, its partitions' names and its indexes' names. RLS flags, policies
 * and grants travel with the table.
 */
export async function swapShadowTable(c: pg.ClientBase, table: string): Promise<void> {
  const shadow = shadowName(table);
  const canonicalIdx = await indexes(c, table);
  const shadowIdx = await indexes(c, shadow);
  const { rows: parts } = await c.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass($1)`,
    [`public.${shadow}`],
  );
  await c.query(`DROP TABLE ${ident(table)} CASCADE`);
  await c.query(`ALTER TABLE ${ident(shadow)} RENAME TO ${ident(table)}`);
  for (const idx of shadowIdx) {
    const twin = canonicalIdx.find((x) => x.shape === idx.shape);
    if (twin && twin.name !== idx.name) await c.query(`ALTER INDEX ${ident(idx.name)} RENAME TO ${ident(twin.name)}`);
  }
  for (const p of parts) {
    const canonical = table + p.name.slice(shadow.length);
    await c.query(`ALTER TABLE ${ident(p.name)} RENAME TO ${ident(canonical)}`);
    for (const idx of await indexes(c, canonical)) {
      if (idx.name.startsWith(shadow)) await c.query(`ALTER INDEX ${ident(idx.name)} RENAME TO ${ident(table + idx.name.slice(shadow.length))}`);
    }
  }
}
