/**
 * The database roles of the event store, as idempotent SQL. Shared by the first migration and by
 * `migrate.ts`, which re-applies it on every run so that a changed ORGHUB_DATABASE_APP_ROLE or a
 * freshly restored database gets its roles and grants without a new migration.
 */

/** Runs tenant statements: not superuser, no BYPASSRLS, owns nothing, sees one org at a time. */
export const DEFAULT_APP_ROLE = 'orghub_app';
/** Cross-org reader for the projector (a trusted system component): SELECT only, BYPASSRLS. */
export const DEFAULT_PROJECTOR_ROLE = 'orghub_projector';

const ROLE_NAME = /^[a-z_][a-z0-9_]*$/;

export function assertRoleName(name: string): string {
  if (!ROLE_NAME.test(name)) throw new Error(`invalid role name ${JSON.stringify(name)} (expected ${ROLE_NAME})`);
  return name;
}

/**
 * One role, in the cluster's catalog: created if missing, its attributes pinned, the migrating user
 * made a member (it connects as itself and switches with SET LOCAL ROLE). Each catalog write is made
 * only when needed: roles are cluster-wide, so the migrators of other databases run this block at
 * the same time, unserialised by any advisory lock (those are per database), and two concurrent
 * writes of one role fail ('tuple concurrently updated'). Creating a BYPASSRLS role needs a
 * superuser: without one, the block reports that a DBA must create it.
 */
export function clusterRoleSql(role: string, opts: { bypassRls: boolean }): string {
  const r = assertRoleName(role);
  const create = opts.bypassRls
    ? `BEGIN
      CREATE ROLE ${r} NOLOGIN NOSUPERUSER BYPASSRLS NOCREATEDB NOCREATEROLE;
    EXCEPTION WHEN insufficient_privilege THEN
      RAISE NOTICE 'cannot create role ${r} with BYPASSRLS (needs a superuser); cross-org readAll will fail until a DBA creates it';
    END;`
    : `CREATE ROLE ${r} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;`;
  const pin = opts.bypassRls
    ? ''
    : `
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${r}' AND (rolsuper OR rolbypassrls)) THEN
    ALTER ROLE ${r} NOSUPERUSER NOBYPASSRLS;
  END IF;`;
  return `DO $role$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${r}') THEN
    ${create}
  END IF;${pin}
  -- nested, not AND: SQL does not promise to test EXISTS before pg_has_role of a missing role
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${r}') THEN
    IF NOT pg_has_role(current_user, '${r}', 'MEMBER') THEN
      EXECUTE format('GRANT ${r} TO %I', current_user);
    END IF;
  END IF;
END
$role$;`;
}

/**
 * SQL that creates the roles if missing, pins their attributes and grants what the event store needs.
 * Role names are validated identifiers, so interpolating them is safe. Creating a BYPASSRLS role
 * needs a superuser: when the migrating user is not one, the projector role must be made by a DBA
 * and this block only reports it.
 */
export function rolesSql(appRole: string = DEFAULT_APP_ROLE, projectorRole: string = DEFAULT_PROJECTOR_ROLE): string {
  const app = assertRoleName(appRole);
  const proj = assertRoleName(projectorRole);
  return `
${clusterRoleSql(app, { bypassRls: false })}
${clusterRoleSql(proj, { bypassRls: true })}
GRANT USAGE ON SCHEMA public TO ${app};
GRANT SELECT, INSERT ON events TO ${app};
GRANT SELECT, INSERT, UPDATE ON streams TO ${app};
GRANT USAGE ON SEQUENCE events_global_position_seq TO ${app};
DO $fns$
DECLARE
  f text;
BEGIN
  -- Only the append functions that exist yet (this block also runs inside the first migration,
  -- before later migrations have added theirs). EXECUTE is granted to PUBLIC by default anyway.
  FOREACH f IN ARRAY ARRAY[
    'eventstore_append(jsonb)',
    'eventstore_append_step(text, jsonb, jsonb, int)',
    'eventstore_append_v2(text[], int[], int[], int[], int[], int[], text[], int[], bigint[], int[], int[], int[], uuid[], text[], int[], jsonb[], jsonb[], text[], text[], int[], int[], int[], int[], text[], int[], int[])',
    'eventstore_append_step_v2(text, int, int[], text[], int[], bigint[], int[], int[], int[], uuid[], text[], int[], jsonb[], jsonb[], text[], text[], int[], int[], int[], int[], text[], int[], int[])',
    'orghub_offboard_org(text, text)'
  ] LOOP
    IF to_regprocedure(f) IS NOT NULL THEN
      EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO ${app}', f);
    END IF;
  END LOOP;
END
$fns$;
DO $proj$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${proj}') THEN
    GRANT USAGE ON SCHEMA public TO ${proj};
    GRANT SELECT ON events, streams TO ${proj};
  END IF;
END
$proj$;
`;
}

/** Runs the query API's reads: not superuser, no BYPASSRLS, owns nothing, SELECT on the read models only. */
export const DEFAULT_QUERY_ROLE = 'orghub_query';
/** The projector's writer: may write the read models and its own bookkeeping, and nothing else. */
export const DEFAULT_PROJECTION_WRITER_ROLE = 'orghub_projection_writer';

/** Tenant read models the query role may SELECT (docs/projections.md). */
export const READ_MODEL_TABLES = ['orgs', 'devices', 'sessions', 'audit_log', 'device_commands'] as const;
/** Everything the projector's writer role writes. */
export const PROJECTION_TABLES = [...READ_MODEL_TABLES, 'projection_checkpoints', 'projection_dead_letters', 'projection_rebuilds'] as const;
/** Projection tables without tenant rows, hence without RLS: the checkpoints of live projections and of rebuilds. */
const UNSCOPED_TABLES: readonly string[] = ['projection_checkpoints', 'projection_rebuilds'];

/**
 * Roles and grants of the read side, as idempotent SQL; the grants wait for the read-model
 * migration. The writer role has no BYPASSRLS: RLS stays forced on every table, and the writer is let
 * through by one explicit permissive policy per table, scoped `TO` that role (visible in
 * pg_policies), so no other role gains anything and the writer can read no events.
 */
export function readModelRolesSql(queryRole: string = DEFAULT_QUERY_ROLE, writerRole: string = DEFAULT_PROJECTION_WRITER_ROLE): string {
  const q = assertRoleName(queryRole);
  const w = assertRoleName(writerRole);
  const models = READ_MODEL_TABLES.join(', ');
  const all = PROJECTION_TABLES.join(', ');
  return `
${clusterRoleSql(q, { bypassRls: false })}
${clusterRoleSql(w, { bypassRls: false })}
DO $rm$
DECLARE
  t text;
BEGIN
  IF to_regclass('public.devices') IS NULL THEN
    RETURN;
  END IF;
  GRANT USAGE ON SCHEMA public TO ${q}, ${w};
  GRANT SELECT ON ${models} TO ${q};
  GRANT SELECT, INSERT, UPDATE, DELETE ON ${all} TO ${w};
  GRANT USAGE ON SEQUENCE projection_dead_letters_id_seq TO ${w};
  GRANT EXECUTE ON FUNCTION readmodel_ensure_audit_partition(timestamptz) TO ${w};
  -- the projector's migration (1764110000000): rebuild shadows and retention
  IF to_regprocedure('readmodel_ensure_partition_of(text, timestamptz)') IS NOT NULL THEN
    GRANT EXECUTE ON FUNCTION readmodel_ensure_partition_of(text, timestamptz), readmodel_drop_audit_partition(text, timestamptz) TO ${w};
  END IF;
  FOREACH t IN ARRAY ARRAY['${PROJECTION_TABLES.filter((t) => !UNSCOPED_TABLES.includes(t)).join("','")}'] LOOP
    EXECUTE format('DROP POLICY IF EXISTS %I ON %I', t || '_writer', t);
    EXECUTE format('CREATE POLICY %I ON %I FOR ALL TO ${w} USING (true) WITH CHECK (true)', t || '_writer', t);
  END LOOP;
END
$rm$;
`;
}
