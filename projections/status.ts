import pg from 'pg';
import { DEFAULT_PROJECTOR_ROLE } from '../hub/eventstore/roles.ts';
import { PROJECTIONS } from './registry.ts';

/** Counting the backlog stops here, so a far-behind projection costs one bounded index scan. */
export const LAG_COUNT_CAP = 100_000;

export interface ProjectionLag {
  name: string;
  version: number | null;
  /** Committed events after the checkpoint (at most LAG_COUNT_CAP; `capped` says so). */
  behindEvents: number;
  capped: boolean;
  /** Age of the oldest event not yet projected; 0 when caught up. */
  behindSeconds: number;
  eventsApplied: number;
  deadLetters: number;
  lagging: boolean;
}

/** Pure: marks a projection lagging when its oldest unprojected event is older than the threshold. */
export function evaluateLag(row: { behind: number; oldestAgeMs: number | null }, thresholdS: number): { behindSeconds: number; lagging: boolean } {
  const behindSeconds = row.behind === 0 || row.oldestAgeMs === null ? 0 : Math.max(0, row.oldestAgeMs / 1000);
  return { behindSeconds, lagging: behindSeconds > thresholdS };
}

interface CheckpointRow { name: string; version: number; tx: string; pos: string; events_applied: string; dead_letters: string }

/**
 * Reads every projection's lag in two small statements: the checkpoints (as the connecting
 * owner; not tenant data), then, as the cross-org reader role, per projection a capped count of
 * the events after its checkpoint and the time of the first of them (both on the
 * `(transaction_id, global_position)` index).
 */
export async function readProjectionLag(pool: pg.Pool, thresholdS: number, readerRole = DEFAULT_PROJECTOR_ROLE): Promise<ProjectionLag[]> {
  const client = await pool.connect();
  try {
    const { rows: cps } = await client.query<CheckpointRow>(
      'SELECT name, version, position_tx::text AS tx, position::text AS pos, events_applied::text, dead_letters::text FROM projection_checkpoints',
    );
    const byName = new Map(cps.map((c) => [c.name, c]));
    const names = [...new Set([...PROJECTIONS.map((p) => p.name), ...cps.map((c) => c.name)])];
    await client.query(`BEGIN READ ONLY; SET LOCAL ROLE ${readerRole}`);
    let lagRows: Array<{ name: string; behind: string; age_ms: number | null }>;
    try {
      lagRows = (await client.query(
        `SELECT k.name,
           (SELECT count(*) FROM (SELECT 1 FROM events e WHERE (e.transaction_id, e.global_position) > (k.tx, k.pos) LIMIT $4) s) AS behind,
           (SELECT extract(epoch FROM (clock_timestamp() - e.recorded_at)) * 1000 FROM events e
             WHERE (e.transaction_id, e.global_position) > (k.tx, k.pos) ORDER BY e.transaction_id, e.global_position LIMIT 1)::float8 AS age_ms
         FROM unnest($1::text[], $2::xid8[], $3::bigint[]) AS k(name, tx, pos)`,
        [names, names.map((n) => byName.get(n)?.tx ?? '0'), names.map((n) => byName.get(n)?.pos ?? '0'), LAG_COUNT_CAP],
      )).rows;
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    }
    return lagRows.map((r) => {
      const cp = byName.get(r.name);
      const behind = Number(r.behind);
      return {
        name: r.name,
        version: cp?.version ?? null,
        behindEvents: behind,
        capped: behind >= LAG_COUNT_CAP,
        ...evaluateLag({ behind, oldestAgeMs: r.age_ms }, thresholdS),
        eventsApplied: Number(cp?.events_applied ?? 0),
        deadLetters: Number(cp?.dead_letters ?? 0),
      };
    });
  } finally {
    client.release();
  }
}
