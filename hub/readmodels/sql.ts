/**
 * SQL for the read-model queries, built from VALIDATED filters (filters.ts). Pure: returns text and
 * bind values, never touches a connection. Only fixed identifiers and operators are spliced in;
 * every value a caller supplied is a `$n` parameter.
 *
 * Listings use keyset pagination on (sort timestamp, id): stable while rows are added (a page never
 * repeats or skips a row that was there before), and each page is one index range scan however deep
 * the caller has paged. Every query also filters `org_id = $1` explicitly, beside RLS, so the
 * planner uses the (org_id, ...) indexes and a mistake in one of the two still shows nothing foreign.
 */
import type { AuditFilter, CommandFilter, DeviceFilter, PageRequest, Position, SessionFilter } from './readModels.ts';

export interface Sql {
  text: string;
  values: unknown[];
}

/** A timestamptz column rendered as ISO 8601 UTC with microseconds, so positions round-trip exactly. */
const iso = (col: string) => `to_char(${col} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/** Escapes LIKE metacharacters so a prefix filter matches `%`, `_` and `\` literally. */
export function escapeLike(s: string): string {
  return s.replace(/[\\%_]/g, (c) => `\\${c}`);
}

interface Listing {
  table: string;
  /** The select list (fixed SQL), producing the wire field names. */
  columns: string;
  /** The sort timestamp expression; never NULL. */
  key: string;
  /** Cast for the id column in the keyset comparison. */
  idType: 'uuid' | 'text';
}

class Builder {
  readonly values: unknown[] = [];
  readonly where: string[] = [];

  constructor(org: string) {
    this.where.push(`org_id = ${this.param(org)}`);
  }

  param(v: unknown): string {
    this.values.push(v);
    return `$${this.values.length}`;
  }

  eq(col: string, v: string | boolean | undefined, cast = ''): void {
    if (v !== undefined) this.where.push(`${col} = ${this.param(v)}${cast}`);
  }

  range(col: string, from: string | undefined, to: string | undefined): void {
    if (from !== undefined) this.where.push(`${col} >= ${this.param(from)}::timestamptz`);
    if (to !== undefined) this.where.push(`${col} < ${this.param(to)}::timestamptz`);
  }

  /** The keyset page: rows after `page.after` in `order`, one more than asked to learn if more follow. */
  list(l: Listing, page: PageRequest, order: 'asc' | 'desc'): Sql {
    if (page.after) {
      const op = order === 'desc' ? '<' : '>';
      this.where.push(`(${l.key}, ${l.table}.id) ${op} (${this.param(page.after.at)}::timestamptz, ${this.param(page.after.id)}::${l.idType})`);
    }
    const dir = order === 'desc' ? 'DESC' : 'ASC';
    const text =
      `SELECT ${l.columns}, ${iso(l.key)} AS "_at", ${l.table}.id::text AS "_id" FROM ${l.table}` +
      // `${l.table}.id`, not `id`: ORDER BY would otherwise pick the text output column `id` and sort
      // in memory instead of walking the (org_id, key, id) index.
      ` WHERE ${this.where.join(' AND ')} ORDER BY ${l.key} ${dir}, ${l.table}.id ${dir} LIMIT ${this.param(page.limit + 1)}`;
    return { text, values: this.values };
  }
}

const AUDIT: Listing = {
  table: 'audit_log',
  columns: `id::text AS "id", ${iso('recorded_at')} AS "recordedAt", global_position::text AS "globalPosition", type, actor, session, topic, outcome, correlation_id AS "correlationId", node, data`,
  key: 'recorded_at',
  idType: 'uuid',
};

const AUDIT_TEXT: Listing = { ...AUDIT, columns: AUDIT.columns.replace(/, data$/, ', data::text AS data') };

const DEVICES: Listing = {
  table: 'devices',
  columns: `id, ${iso('first_seen')} AS "firstSeen", ${iso('last_seen')} AS "lastSeen", online, open_sessions AS "openSessions", current_session AS "currentSession", transport, client_id AS "clientId"`,
  key: 'last_seen',
  idType: 'text',
};

// A session may lack connected_at (the projector saw only its end); it sorts as the oldest.
const SESSIONS: Listing = {
  table: 'sessions',
  columns: `id, actor, device_id AS "deviceId", transport, client_id AS "clientId", node, ${iso('connected_at')} AS "connectedAt", ${iso('disconnected_at')} AS "disconnectedAt", duration_ms::text AS "durationMs", reason, close_code AS "closeCode"`,
  key: `coalesce(connected_at, 'epoch'::timestamptz)`,
  idType: 'text',
};

/** The status a reader sees: queued or delivered past `expires_at` is expired. */
const EFFECTIVE_STATUS = `CASE WHEN status IN ('queued', 'delivered') AND expires_at <= now() THEN 'expired' ELSE status END`;

const COMMANDS: Listing = {
  table: 'device_commands',
  // A fleet command past its expiry reads as expired even before its `expired` event is folded.
  columns: `id::text AS "id", device_id AS "deviceId", topic, type, data, ${EFFECTIVE_STATUS} AS status, issued_by AS "issuedBy", ${iso('issued_at')} AS "issuedAt", ${iso('updated_at')} AS "updatedAt", global_position::text AS "globalPosition", idempotency_key AS "idempotencyKey", ${iso('expires_at')} AS "expiresAt", fleet_id::text AS "fleetId", ${iso('delivered_at')} AS "deliveredAt", details`,
  key: 'issued_at',
  idType: 'uuid',
};

/** `dataAsText`: `data` as its JSON text (the CSV export writes it as is, saving a parse and a stringify per row). */
export function auditSql(org: string, f: AuditFilter, page: PageRequest, dataAsText = false): Sql {
  const b = new Builder(org);
  b.eq('actor', f.actor);
  if (f.type !== undefined) b.where.push(`type LIKE ${b.param(`${escapeLike(f.type)}%`)}`);
  b.eq('topic', f.topic);
  b.eq('outcome', f.outcome);
  b.range('recorded_at', f.from, f.to);
  b.eq('correlation_id', f.correlationId);
  return b.list(dataAsText ? AUDIT_TEXT : AUDIT, page, f.order ?? 'desc');
}

export function devicesSql(org: string, f: DeviceFilter, page: PageRequest): Sql {
  const b = new Builder(org);
  b.eq('online', f.online);
  b.eq('transport', f.transport);
  if (f.seenSince !== undefined) b.where.push(`last_seen >= ${b.param(f.seenSince)}::timestamptz`);
  return b.list(DEVICES, page, 'desc');
}

export function deviceSql(org: string, id: string): Sql {
  return { text: `SELECT ${DEVICES.columns} FROM devices WHERE org_id = $1 AND id = $2`, values: [org, id] };
}

export function sessionsSql(org: string, f: SessionFilter, page: PageRequest): Sql {
  const b = new Builder(org);
  b.eq('device_id', f.device);
  b.eq('actor', f.actor);
  b.eq('transport', f.transport);
  if (f.state === 'open') b.where.push('disconnected_at IS NULL');
  if (f.state === 'closed') b.where.push('disconnected_at IS NOT NULL');
  b.range('connected_at', f.from, f.to);
  return b.list(SESSIONS, page, 'desc');
}

export function commandsSql(org: string, f: CommandFilter, page: PageRequest): Sql {
  const b = new Builder(org);
  b.eq('device_id', f.device);
  b.eq('type', f.type);
  b.eq('status', f.status);
  b.range('issued_at', f.from, f.to);
  return b.list(COMMANDS, page, 'desc');
}

/** Per-status counts of one bulk fleet command (an empty result: no such fleet id in this org). */
export function fleetSummarySql(org: string, fleetId: string): Sql {
  return {
    text: `SELECT ${EFFECTIVE_STATUS} AS status, count(*)::int AS n, min(type) AS type, ${iso('min(issued_at)')} AS "issuedAt", min(issued_by) AS "issuedBy", ${iso('max(expires_at)')} AS "expiresAt"
             FROM device_commands WHERE org_id = $1 AND fleet_id = $2 GROUP BY 1`,
    values: [org, fleetId],
  };
}

/** Device ids of the org, in id order, at most `max`. */
export function deviceIdsSql(org: string, max: number): Sql {
  return { text: 'SELECT id FROM devices WHERE org_id = $1 ORDER BY id LIMIT $2', values: [org, max] };
}

/**
 * Splits the `limit + 1` rows a listing query returned into the page and the next position, and
 * strips the position columns.
 */
export function toPage<T>(rows: Record<string, unknown>[], limit: number): { items: T[]; next?: Position } {
  const more = rows.length > limit;
  const kept = more ? rows.slice(0, limit) : rows;
  const last = kept[kept.length - 1];
  const items = kept.map(({ _at, _id, ...rest }) => rest as T);
  return more && last ? { items, next: { at: String(last._at), id: String(last._id) } } : { items };
}
