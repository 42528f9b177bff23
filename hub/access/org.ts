import { HubError } from '../errors.ts';
import { validateOrgLimits } from '../limits/directoryTiers.ts';

/** An org as the platform operator manages it (docs/access.md "Orgs"). Times in ms since the epoch. */
export interface OrgRecord {
  org: string;
  status: 'active' | 'suspended';
  tier: string;
  /** Free-form settings for the tenant (bounded in size). */
  settings: Record<string, unknown>;
  /** Overrides of per-org limits by name (`ORGHUB_LIMITS_…`, hub/limits/directoryTiers.ts ORG_LIMIT_FIELDS), numbers within that field's bounds. */
  limits: Record<string, number>;
  auditRetentionDays: number;
  createdAt: number;
  updatedAt: number;
  suspendedAt?: number;
  suspendReason?: string;
}

export type OrgChanges = Partial<Pick<OrgRecord, 'tier' | 'settings' | 'limits' | 'auditRetentionDays'>>;

/** Same alphabet as the token's org claim (hub/auth/joseVerifier.ts); `_` first is the hub's own. */
const ORG_RE = /^[A-Za-z0-9-][A-Za-z0-9_-]{0,63}$/;
const TIER_RE = /^[a-z][a-z0-9-]{0,31}$/;
const MAX_SETTINGS_BYTES = 8192;

export function isOrgId(v: unknown): v is string {
  return typeof v === 'string' && ORG_RE.test(v);
}

function changes(b: Record<string, unknown>, allowed: string[]): OrgChanges {
  for (const k of Object.keys(b)) if (!allowed.includes(k)) throw new HubError('invalid', `unknown field "${k.slice(0, 64)}"`);
  const out: OrgChanges = {};
  if (b.tier !== undefined) {
    if (typeof b.tier !== 'string' || !TIER_RE.test(b.tier)) throw new HubError('invalid', 'tier must match [a-z][a-z0-9-]{0,31}');
    out.tier = b.tier;
  }
  if (b.settings !== undefined) {
    if (typeof b.settings !== 'object' || b.settings === null || Array.isArray(b.settings)) throw new HubError('invalid', 'settings must be an object');
    if (Buffer.byteLength(JSON.stringify(b.settings)) > MAX_SETTINGS_BYTES) throw new HubError('invalid', `settings must be at most ${MAX_SETTINGS_BYTES} bytes of JSON`);
    out.settings = b.settings as Record<string, unknown>;
  }
  if (b.limits !== undefined) {
    if (typeof b.limits !== 'object' || b.limits === null || Array.isArray(b.limits)) throw new HubError('invalid', 'limits must be an object');
    // Only names the limiters apply, each with its field's type and bounds (hub/limits/directoryTiers.ts).
    const problem = validateOrgLimits(b.limits);
    if (problem) throw new HubError('invalid', problem);
    out.limits = b.limits as Record<string, number>;
  }
  if (b.auditRetentionDays !== undefined) {
    const d = b.auditRetentionDays;
    if (typeof d !== 'number' || !Number.isInteger(d) || d < 1 || d > 3650) throw new HubError('invalid', 'auditRetentionDays must be an integer 1-3650');
    out.auditRetentionDays = d;
  }
  return out;
}

function object(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HubError('invalid', 'body must be a JSON object');
  return body as Record<string, unknown>;
}

/** POST /v1/orgs. */
export function parseCreateOrg(body: unknown, nowMs: number): OrgRecord {
  const b = object(body);
  if (!isOrgId(b.org)) throw new HubError('invalid', 'org must match [A-Za-z0-9-][A-Za-z0-9_-]{0,63}');
  const c = changes(b, ['org', 'tier', 'settings', 'limits', 'auditRetentionDays']);
  return { org: b.org, status: 'active', tier: c.tier ?? 'standard', settings: c.settings ?? {}, limits: c.limits ?? {}, auditRetentionDays: c.auditRetentionDays ?? 90, createdAt: nowMs, updatedAt: nowMs };
}

/** PATCH /v1/orgs/{org}: at least one field. */
export function parseOrgChanges(body: unknown): OrgChanges {
  const c = changes(object(body), ['tier', 'settings', 'limits', 'auditRetentionDays']);
  if (Object.keys(c).length === 0) throw new HubError('invalid', 'nothing to change');
  return c;
}

/** POST /v1/orgs/{org}/suspend: an optional reason shown to nobody but operators and the audit log. */
export function parseSuspend(body: unknown): { reason: string } {
  if (body === undefined) return { reason: '' };
  const b = object(body);
  for (const k of Object.keys(b)) if (k !== 'reason') throw new HubError('invalid', `unknown field "${k.slice(0, 64)}"`);
  const r = b.reason ?? '';
  if (typeof r !== 'string' || r.length > 200 || /[\u0000-\u001f\u007f]/.test(r)) throw new HubError('invalid', 'reason must be at most 200 characters without control characters');
  return { reason: r };
}

export function describeOrg(r: OrgRecord): Record<string, unknown> {
  const iso = (t?: number) => (t === undefined ? null : new Date(t).toISOString());
  return { org: r.org, status: r.status, tier: r.tier, settings: r.settings, limits: r.limits, auditRetentionDays: r.auditRetentionDays, createdAt: iso(r.createdAt), updatedAt: iso(r.updatedAt), suspendedAt: iso(r.suspendedAt), suspendReason: r.suspendReason ?? null };
}
