/**
 * Postgres adapter of ReadModels. It has its OWN pool, apart from the event store's append pool, so
 * a burst of queries or a long export never delays a durable ack, and a per-connection statement
 * timeout so no query holds a connection for long.
 *
 * Each call is one transaction: `SET LOCAL ROLE <query role>` (not superuser, no BYPASSRLS, owns
 * nothing, SELECT on the read models only) and `set_config('app.org_id', org, true)`. Both are
 * LOCAL, so they end with the transaction and a pooled connection carries nothing to its next user.
 */
import pg from 'pg';
import { HubError } from '../errors.ts';
import { assertRoleName, DEFAULT_QUERY_ROLE } from '../eventstore/roles.ts';
import type { AuditEntry, AuditFilter, CommandFilter, Device, DeviceCommand, DeviceFilter, Page, PageRequest, ReadModels, Session, SessionFilter } from './readModels.ts';
import { auditSql, commandsSql, deviceIdsSql, devicesSql, deviceSql, fleetSummarySql, sessionsSql, toPage, type Sql } from './sql.ts';

export interface PostgresReadModelsOptions {
  databaseUrl: string;
  /** Role the queries run as (SET LOCAL ROLE); default `orghub_query`. */
  queryRole?: string;
  /** Connections in this pool; default 4. */
  poolSize?: number;
  /** Server-side statement_timeout per query, ms; default 5000. */
  statementTimeoutMs?: number;
  /** Called with database errors that are not the caller's fault (logged by the hub). */
  onError?: (err: unknown, what: string) => void;
}

/** Timed out, or the database is not there right now: the caller may retry. */
function isUnavailable(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  if (typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code)) return true; // socket errors, client timeouts
  return /^(08|53|57)/.test(code); // connection, resources, operator intervention (57014 = statement timeout)
}

export function createPostgresReadModels(options: PostgresReadModelsOptions): ReadModels {
  const role = assertRoleName(options.queryRole ?? DEFAULT_QUERY_ROLE);
  const onError = options.onError ?? (() => {});
  const statementTimeout = options.statementTimeoutMs ?? 5000;
  const pool = new pg.Pool({
    connectionString: options.databaseUrl,
    max: options.poolSize ?? 4,
    connectionTimeoutMillis: 2000,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
    statement_timeout: statementTimeout,
    // The client-side bound catches a server that stopped answering altogether.
    query_timeout: statementTimeout + 2000,
  });
  pool.on('error', (err) => onError(err, 'idle connection'));

  /** One transaction as the query role with the org set; the database's words never reach the caller. */
  async function inOrg<T>(what: string, org: string, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      onError(err, what);
      throw new HubError('unavailable', 'read models are unavailable; retry later');
    }
    let lost: unknown;
    const onLost = (err: unknown) => (lost = err);
    client.on('error', onLost);
    let broken: unknown;
    try {
      await client.query(`BEGIN READ ONLY; SET LOCAL ROLE ${role}`);
      await client.query(`SELECT set_config('app.org_id', $1, true)`, [org]);
      const out = await fn(client);
      await client.query('COMMIT');
      return out;
    } catch (err) {
      if (isUnavailable(err)) broken = err;
      else await client.query('ROLLBACK').catch((e: unknown) => (broken = e));
      onError(err, what);
      if (isUnavailable(err)) throw new HubError('unavailable', 'read models are unavailable or the query took too long; narrow the filters or retry');
      throw new HubError('internal', 'internal error');
    } finally {
      client.off('error', onLost);
      const b = broken ?? lost;
      client.release(b instanceof Error ? b : b === undefined ? undefined : true);
    }
  }

  async function list<T>(what: string, org: string, sql: Sql, limit: number): Promise<Page<T>> {
    const rows = await inOrg(what, org, async (c) => (await c.query(sql)).rows as Record<string, unknown>[]);
    return toPage<T>(rows, limit);
  }

  return {
    audit: (org: string, f: AuditFilter, page: PageRequest) => list<AuditEntry>('audit', org, auditSql(org, f, page), page.limit),
    devices: (org: string, f: DeviceFilter, page: PageRequest) => list<Device>('devices', org, devicesSql(org, f, page), page.limit),
    sessions: (org: string, f: SessionFilter, page: PageRequest) => list<Session>('sessions', org, sessionsSql(org, f, page), page.limit),
    commands: (org: string, f: CommandFilter, page: PageRequest) => list<DeviceCommand>('commands', org, commandsSql(org, f, page), page.limit),
    async fleetSummary(org, fleetId) {
      const rows = await inOrg('fleet', org, async (c) => (await c.query(fleetSummarySql(org, fleetId))).rows as { status: string; n: number; type: string; issuedAt: string; issuedBy: string; expiresAt: string }[]);
      if (rows.length === 0) return undefined;
      const byStatus: Record<string, number> = { queued: 0, delivered: 0, succeeded: 0, failed: 0, rejected: 0, expired: 0, cancelled: 0 };
      for (const r of rows) byStatus[r.status] = (byStatus[r.status] ?? 0) + r.n;
      const first = rows.reduce((a, b) => (a.issuedAt <= b.issuedAt ? a : b));
      return { fleetId, type: first.type, issuedBy: first.issuedBy, issuedAt: first.issuedAt, expiresAt: first.expiresAt, total: rows.reduce((n, r) => n + r.n, 0), byStatus };
    },
    async deviceIds(org, max) {
      const rows = await inOrg('devices', org, async (c) => (await c.query(deviceIdsSql(org, max))).rows as { id: string }[]);
      return rows.map((r) => r.id);
    },
    async device(org, id) {
      const rows = await inOrg('device', org, async (c) => (await c.query(deviceSql(org, id))).rows);
      return rows[0] as Device | undefined;
    },
    async exportAudit(org, filter, pageSize, sink) {
      let after: PageRequest['after'];
      let total = 0;
      for (;;) {
        const page = await list<AuditEntry>('audit export', org, auditSql(org, filter, { limit: pageSize, after }, true), pageSize);
        total += page.items.length;
        if (page.items.length > 0 && (await sink(page.items)) === false) return total;
        if (!page.next) return total;
        after = page.next;
      }
    },
    async close() {
      await pool.end();
    },
  };
}
