import { Ajv } from 'ajv';
import type { Logger } from '../log.ts';
import type { OrgTierSource } from './orgTiers.ts';
import { partialLimits, TIERS, validateOrgOverride, type OrgOverride, type Tier } from './tiers.ts';

/**
 * The org directory's `limits` names (`PATCH /v1/orgs/{org}` `{"limits":{…}}`) and the field of
 * TierLimits each one overrides (docs/operations.md "Limits"). Rates are per second; 0 = unlimited
 * where the field allows it.
 */
export const ORG_LIMIT_FIELDS: Readonly<Record<string, readonly [string] | readonly [string, string]>> = {
  ORGHUB_LIMITS_PUBLISH_CONNECTION: ['publish', 'connection'],
  ORGHUB_LIMITS_PUBLISH_USER: ['publish', 'user'],
  ORGHUB_LIMITS_PUBLISH_ORG: ['publish', 'org'],
  ORGHUB_LIMITS_COMMANDS_CONNECTION: ['commands', 'connection'],
  ORGHUB_LIMITS_COMMANDS_USER: ['commands', 'user'],
  ORGHUB_LIMITS_COMMANDS_ORG: ['commands', 'org'],
  ORGHUB_LIMITS_BURST_SECONDS: ['burstSeconds'],
  ORGHUB_LIMITS_ORG_BURST_SECONDS: ['orgBurstSeconds'],
  ORGHUB_LIMITS_CONNECTIONS_ORG: ['connections', 'org'],
  ORGHUB_LIMITS_CONNECTIONS_USER: ['connections', 'user'],
  ORGHUB_LIMITS_MAX_MESSAGE_BYTES: ['maxMessageBytes'],
  ORGHUB_LIMITS_PATTERNS_PER_NODE: ['patternsPerNode'],
  ORGHUB_LIMITS_RETAINED_BYTES: ['retainedBytes'],
  ORGHUB_LIMITS_INFLIGHT_COMMANDS: ['inflightCommands'],
};

/** At most this many overrides per org. */
export const MAX_ORG_LIMITS = 32;

/** The leaf of the ORGHUB_LIMITS_ORGS schema at `path` (e.g. publish.connection: a rate, 0 = unlimited). */
function leaf(path: readonly string[]): object {
  let node: any = partialLimits;
  for (const k of path) node = node.properties[k];
  return node as object;
}

/**
 * The JSON schema of a directory record's `limits` (POST/PATCH /v1/orgs): only ORG_LIMIT_FIELDS
 * names, each with the type and bounds of the field it overrides, so nothing is stored that the
 * limiters would then ignore.
 */
export const orgLimitsSchema = {
  type: 'object',
  maxProperties: MAX_ORG_LIMITS,
  properties: Object.fromEntries(Object.entries(ORG_LIMIT_FIELDS).map(([name, path]) => [name, leaf(path)])),
  additionalProperties: false,
};
const validateLimits = new Ajv({ allErrors: false }).compile(orgLimitsSchema);

/** Why a `limits` object is refused (naming the limit), or undefined when every override is a known limit of the right type. */
export function validateOrgLimits(v: unknown): string | undefined {
  if (validateLimits(v)) return undefined;
  const e = validateLimits.errors?.[0];
  if (!e) return 'limits is invalid';
  if (e.keyword === 'additionalProperties') return `unknown limit "${String((e.params as { additionalProperty?: string }).additionalProperty).slice(0, 64)}" (known: ${Object.keys(ORG_LIMIT_FIELDS).join(', ')})`;
  return `limits${e.instancePath.replace(/^\//, '.')} ${e.message ?? 'is invalid'}`;
}

/** What the limits need of a directory record (hub/access/org.ts OrgRecord). */
export interface DirectoryOrg {
  tier: string;
  limits: Record<string, number>;
}

/**
 * A directory record as a limits override. A tier that is not a limits tier (the directory allows
 * any name, e.g. `gold`) and names that are not limits (ORG_LIMIT_FIELDS) are left out and reported
 * in `ignored`; an override that fails the ORGHUB_LIMITS_ORGS schema (e.g. a 0 message size) is
 * dropped whole, reported in `problem`, and only the tier is kept.
 */
export function overrideFromDirectory(r: DirectoryOrg): { over: OrgOverride; ignored: string[]; problem?: string } {
  const ignored: string[] = [];
  const over: Record<string, any> = {};
  if ((TIERS as readonly string[]).includes(r.tier)) over.tier = r.tier as Tier;
  else ignored.push(`tier ${r.tier}`);
  for (const [name, value] of Object.entries(r.limits ?? {})) {
    const path = ORG_LIMIT_FIELDS[name];
    if (!path) {
      ignored.push(name);
      continue;
    }
    if (path.length === 1) over[path[0]] = value;
    else (over[path[0]] ??= {})[path[1]!] = value;
  }
  const problem = validateOrgOverride(over);
  if (problem) return { over: over.tier ? { tier: over.tier } : {}, ignored, problem };
  return { over: over as OrgOverride, ignored };
}

/**
 * The org directory (Redis, hub/access/orgStore.ts) as a source of tiers and overrides. An org the
 * directory does not know, or a directory that does not answer, resolves undefined: the config
 * (ORGHUB_LIMITS_ORGS, then ORGHUB_LIMITS_TIER) decides.
 */
export function createDirectoryTierSource(get: (org: string) => Promise<DirectoryOrg | undefined>, log: Logger): OrgTierSource {
  const warned = new Set<string>();
  return async (org) => {
    let r: DirectoryOrg | undefined;
    try {
      r = await get(org);
    } catch (err) {
      if (!warned.has('')) log.warn({ err: (err as Error).message }, 'org directory unreadable; limits follow the config until it answers');
      warned.add('');
      return undefined;
    }
    warned.delete('');
    if (!r) return undefined;
    const { over, ignored, problem } = overrideFromDirectory(r);
    const note = JSON.stringify([ignored, problem]);
    if ((ignored.length || problem) && !warned.has(`${org}|${note}`)) {
      if (warned.size > 10_000) warned.clear();
      warned.add(`${org}|${note}`);
      log.warn({ org, ignored, problem }, 'org directory: some limit overrides are not limits or are invalid; they are not applied');
    }
    return over;
  };
}
