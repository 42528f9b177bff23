import type pg from 'pg';

/** Audit retention every org gets until an admin changes `orgs.audit_retention_days`. */
export const DEFAULT_RETENTION_DAYS = 90;
const DAY_MS = 86_400_000;

export interface RetentionPlan {
  /** Month partitions whose whole month is older than every org's retention. */
  dropPartitions: string[];
  /** Cutoff passed to the drop function (now − the longest retention). */
  dropBefore: Date;
  /** Orgs with a shorter retention, trimmed row by row in small batches: [org, cutoff]. */
  trims: Array<[string, Date]>;
}

/** First instant (UTC) after the month of partition `audit_log_YYYY_MM`; undefined for other names. */
export function partitionEnd(name: string): Date | undefined {
  const m = /^audit_log_(\d{4})_(\d{2})$/.exec(name);
  if (!m) return undefined;
  return new Date(Date.UTC(Number(m[1]), Number(m[2]), 1));
}

/**
 * Pure: what a sweep does. Whole partitions go when their month lies before the longest
 * retention of any org (the default counts too, for orgs the orgs projection has not seen yet);
 * orgs with a shorter retention are trimmed inside the partitions that remain.
 */
export function planRetention(now: Date, orgs: ReadonlyArray<{ org_id: string; days: number }>, partitions: readonly string[]): RetentionPlan {
  const keepDays = Math.max(DEFAULT_RETENTION_DAYS, ...orgs.map((o) => o.days));
  const dropBefore = new Date(now.getTime() - keepDays * DAY_MS);
  const dropPartitions = partitions.filter((p) => {
    const end = partitionEnd(p);
    return end !== undefined && end.getTime() <= dropBefore.getTime();
  }).sort();
  const trims = orgs.filter((o) => o.days < keepDays).map((o): [string, Date] => [o.org_id, new Date(now.getTime() - o.days * DAY_MS)]);
  return { dropPartitions, dropBefore, trims };
}

export interface RetentionResult {
  droppedPartitions: string[];
  trimmedRows: number;
  skipped?: 'locked';
}

/**
 * One sweep, as the writer role, one short transaction per step: partitions are dropped through
 * the SECURITY DEFINER `readmodel_drop_audit_partition` (lock_timeout 2 s), and per-org trims
 * delete at most `batch` rows per transaction, so no lock is held for long. A session advisory
 * lock keeps two projector processes from sweeping at once.
 */
export async function sweepRetention(client: pg.ClientBase, writerRole: string, batch: number, now = new Date()): Promise<RetentionResult> {
  const { rows: lock } = await client.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock(hashtext('orghub.projection'), hashtext('retention')) AS ok`);
  if (!lock[0].ok) return { droppedPartitions: [], trimmedRows: 0, skipped: 'locked' };
  const asWriter = async <T>(fn: () => Promise<T>): Promise<T> => {
    await client.query(`BEGIN; SET LOCAL ROLE ${writerRole}`);
    try {
      const r = await fn();
      await client.query('COMMIT');
      return r;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    }
  };
  try {
    const { orgs, partitions } = await asWriter(async () => ({
      orgs: (await client.query<{ org_id: string; days: number }>('SELECT org_id, audit_retention_days AS days FROM orgs')).rows,
      partitions: (await client.query<{ name: string }>(`SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'public.audit_log'::regclass`)).rows.map((r) => r.name),
    }));
    const plan = planRetention(now, orgs, partitions);
    const droppedPartitions: string[] = [];
    for (const p of plan.dropPartitions) {
      const dropped = await asWriter(async () => (await client.query<{ ok: boolean }>('SELECT readmodel_drop_audit_partition($1, $2) AS ok', [p, plan.dropBefore])).rows[0].ok);
      if (dropped) droppedPartitions.push(p);
    }
    let trimmedRows = 0;
    for (const [org, cutoff] of plan.trims) {
      for (;;) {
        const n = await asWriter(async () =>
          (await client.query(
            `DELETE FROM audit_log WHERE (org_id, id, recorded_at) IN (
               SELECT org_id, id, recorded_at FROM audit_log WHERE org_id = $1 AND recorded_at < $2 ORDER BY recorded_at LIMIT $3)`,
            [org, cutoff, batch],
          )).rowCount ?? 0,
        );
        trimmedRows += n;
        if (n < batch) break;
      }
    }
    return { droppedPartitions, trimmedRows };
  } finally {
    await client.query(`SELECT pg_advisory_unlock(hashtext('orghub.projection'), hashtext('retention'))`);
  }
}
