import { randomUUID } from 'node:crypto';
import pg from 'pg';

/**
 * Read-model rows for query tests, written directly as the migrating owner (the projector's job in
 * production). A fixture of the real tables in the real database: every test uses its own org ids.
 */
export interface ReadModelFixtures {
  pool: pg.Pool;
  audit(org: string, row?: Partial<AuditRow>): Promise<AuditRow>;
  /** `n` audit rows for `org`, set-based (generate_series), one per millisecond from `start`; `pad` bytes of data each. */
  bulkAudit(org: string, n: number, opts?: { start?: Date; pad?: number; actor?: string }): Promise<void>;
  device(org: string, row?: Partial<DeviceRow>): Promise<DeviceRow>;
  session(org: string, row?: Partial<SessionRow>): Promise<SessionRow>;
  command(org: string, row?: Partial<CommandRow>): Promise<CommandRow>;
  /** Deletes every read-model row of `org` (after a bulk test). */
  clear(org: string): Promise<void>;
  close(): Promise<void>;
}

export interface AuditRow {
  id: string;
  recorded_at: Date;
  type: string;
  actor: string;
  topic: string | null;
  outcome: string;
  correlation_id: string | null;
  session: string | null;
  data: unknown;
}
export interface DeviceRow {
  id: string;
  last_seen: Date;
  online: boolean;
  transport: string | null;
}
export interface SessionRow {
  id: string;
  actor: string;
  device_id: string | null;
  transport: string | null;
  connected_at: Date | null;
  disconnected_at: Date | null;
}
export interface CommandRow {
  id: string;
  device_id: string | null;
  type: string;
  status: string;
  issued_at: Date;
  topic: string;
}

export function createReadModelFixtures(databaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/orghub'): ReadModelFixtures {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 3 });
  let position = Date.now() * 1000;
  const partitions = new Set<string>();
  /** As the owner, with app.org_id set: FORCE ROW LEVEL SECURITY binds a non-superuser owner too. */
  const inOrg = async (org: string, text: string, values: unknown[]) => {
    const c = await pool.connect();
    try {
      await c.query('BEGIN');
      await c.query(`SELECT set_config('app.org_id', $1, true)`, [org]);
      await c.query(text, values);
      await c.query('COMMIT');
    } catch (err) {
      await c.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      c.release();
    }
  };
  const ensurePartition = async (at: Date) => {
    const key = at.toISOString().slice(0, 7);
    if (partitions.has(key)) return;
    await pool.query('SELECT readmodel_ensure_audit_partition($1)', [at]);
    partitions.add(key);
  };
  return {
    pool,
    async audit(org, row = {}) {
      const r: AuditRow = {
        id: randomUUID(),
        recorded_at: new Date(),
        type: 'publish.denied',
        actor: 'user-1',
        topic: 'devices/d1/telemetry',
        outcome: 'denied',
        correlation_id: null,
        session: null,
        data: { reason: 'acl' },
        ...row,
      };
      await ensurePartition(r.recorded_at);
      await inOrg(
        org,
        `INSERT INTO audit_log (org_id, id, recorded_at, global_position, type, actor, session, topic, outcome, correlation_id, node, data)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'node-1', $11)`,
        [org, r.id, r.recorded_at, position++, r.type, r.actor, r.session, r.topic, r.outcome, r.correlation_id, JSON.stringify(r.data)],
      );
      return r;
    },
    async bulkAudit(org, n, opts = {}) {
      const start = opts.start ?? new Date(Date.now() - n);
      await ensurePartition(start);
      await ensurePartition(new Date(start.getTime() + n));
      await inOrg(
        org,
        `INSERT INTO audit_log (org_id, id, recorded_at, global_position, type, actor, session, topic, outcome, correlation_id, node, data)
         SELECT $1, gen_random_uuid(), $2::timestamptz + g * interval '1 millisecond', $3::bigint + g,
                CASE WHEN g % 10 = 0 THEN 'publish.denied' ELSE 'session.connected' END, $5, NULL,
                CASE WHEN g % 1000 = 0 THEN '=HYPERLINK("http://x")' ELSE 'devices/d' || g || '/telemetry' END,
                CASE WHEN g % 10 = 0 THEN 'denied' ELSE 'ok' END, NULL, 'node-1',
                jsonb_build_object('n', g, 'pad', repeat('p', $4::int))
         FROM generate_series(1, $6::int) AS g`,
        [org, start, position, opts.pad ?? 0, opts.actor ?? 'bulk-actor', n],
      );
      position += n + 1;
    },
    async device(org, row = {}) {
      const r: DeviceRow = { id: `d-${randomUUID().slice(0, 8)}`, last_seen: new Date(), online: true, transport: 'ws', ...row };
      await inOrg(
        org,
        `INSERT INTO devices (org_id, id, first_seen, last_seen, online, open_sessions, current_session, transport, client_id)
         VALUES ($1, $2, $3, $3, $4, $5, NULL, $6, NULL)`,
        [org, r.id, r.last_seen, r.online, r.online ? 1 : 0, r.transport],
      );
      return r;
    },
    async session(org, row = {}) {
      const r: SessionRow = { id: randomUUID(), actor: 'user-1', device_id: null, transport: 'ws', connected_at: new Date(), disconnected_at: null, ...row };
      await inOrg(
        org,
        `INSERT INTO sessions (org_id, id, actor, device_id, transport, client_id, node, connected_at, disconnected_at, duration_ms, reason, close_code)
         VALUES ($1, $2, $3, $4, $5, NULL, 'node-1', $6, $7, NULL, NULL, NULL)`,
        [org, r.id, r.actor, r.device_id, r.transport, r.connected_at, r.disconnected_at],
      );
      return r;
    },
    async command(org, row = {}) {
      const r: CommandRow = { id: randomUUID(), device_id: 'd1', type: 'device.reboot', status: 'issued', issued_at: new Date(), topic: 'devices/d1/commands', ...row };
      await inOrg(
        org,
        `INSERT INTO device_commands (org_id, id, device_id, topic, type, data, status, issued_by, issued_at, updated_at, global_position, idempotency_key)
         VALUES ($1, $2, $3, $4, $5, '{}', $6, 'admin-1', $7, $7, $8, NULL)`,
        [org, r.id, r.device_id, r.topic, r.type, r.status, r.issued_at, position++],
      );
      return r;
    },
    async clear(org) {
      for (const t of ['audit_log', 'devices', 'sessions', 'device_commands']) await inOrg(org, `DELETE FROM ${t} WHERE org_id = $1`, [org]);
    },
    close: () => pool.end(),
  };
}
