import pg from 'pg';
import type { Logger } from '../log.ts';
import { DEFAULT_QUERY_ROLE } from '../eventstore/roles.ts';
import { validateOrgOverride, type OrgOverride } from './tiers.ts';

/** Reads one org's tier and limit overrides; undefined when the org has no row (or it is unreadable). */
export type OrgTierSource = (org: string) => Promise<OrgOverride | undefined>;

/**
 * The `orgs` read model (filled by the projector) as a source of tiers: `tier`, and
 * `settings.limits` (the fields of ORGHUB_LIMITS_ORGS, validated the same way; an invalid one is
 * ignored and logged). Read as the query role under RLS with the org set for the transaction, like
 * every tenant read. Failures (Postgres down, table not migrated) resolve undefined: limits then
 * follow the config alone.
 */
export function createPgOrgTierSource(databaseUrl: string, log: Logger, queryRole = DEFAULT_QUERY_ROLE): OrgTierSource & { close(): Promise<void> } {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 2, connectionTimeoutMillis: 1500, statement_timeout: 2000 });
  pool.on('error', () => {});
  let warned = false;
  const source = async (org: string): Promise<OrgOverride | undefined> => {
    let client: pg.PoolClient | undefined;
    try {
      client = await pool.connect();
      await client.query('BEGIN');
      await client.query(`SET LOCAL ROLE ${queryRole}`);
      await client.query(`SELECT set_config('app.org_id', $1, true)`, [org]);
      const r = await client.query<{ tier: string; settings: { limits?: unknown } }>('SELECT tier, settings FROM orgs WHERE org_id = $1 AND id = $1', [org]);
      await client.query('COMMIT');
      warned = false;
      const row = r.rows[0];
      if (!row) return undefined;
      const candidate = { ...(typeof row.settings?.limits === 'object' && row.settings.limits !== null ? row.settings.limits : {}), tier: row.tier };
      const problem = validateOrgOverride(candidate);
      if (problem) {
        log.warn({ org, problem }, 'orgs read model: tier or settings.limits invalid; using the config for this org');
        return undefined;
      }
      return candidate as OrgOverride;
    } catch (err) {
      await client?.query('ROLLBACK').catch(() => {});
      if (!warned) log.warn({ err: (err as Error).message }, 'orgs read model unreadable; tiers come from the config until it answers');
      warned = true;
      return undefined;
    } finally {
      client?.release();
    }
  };
  return Object.assign(source, { close: () => pool.end() });
}
