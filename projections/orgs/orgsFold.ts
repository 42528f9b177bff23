import type { RecordedEvent } from '../../hub/eventstore/eventStore.ts';
import { BadEventError, isPlainObject, type Rejected } from '../projection.ts';

/** What one batch says about an org: the time span of its events. */
export interface OrgSpan {
  org_id: string;
  first_event_at: string;
  last_event_at: string;
}

/** The lifecycle columns one batch sets for an org; a key absent is left as it is. */
export interface OrgPatch {
  status?: 'active' | 'suspended';
  tier?: string;
  settings?: Record<string, unknown>;
  limits?: Record<string, number>;
  audit_retention_days?: number;
  created_at?: string;
  suspended_at?: string | null;
  suspend_reason?: string | null;
}

/** The merged lifecycle changes of one org in one batch, with the global position of the last one. */
export interface OrgLifecycle {
  org_id: string;
  position: string;
  patch: OrgPatch;
}

export interface FoldedOrgs {
  spans: OrgSpan[];
  lifecycle: OrgLifecycle[];
  rejected: Rejected[];
}

/** The stream orgApi (hub/http/orgApi.ts) records each org's lifecycle in. */
export const ORG_LIFECYCLE_STREAM = 'org';
const LIFECYCLE_TYPES = new Set(['org.created', 'org.updated', 'org.suspended', 'org.resumed']);
const TIER_RE = /^[a-z][a-z0-9-]{0,31}$/;

function tier(v: unknown): string {
  if (typeof v !== 'string' || !TIER_RE.test(v)) throw new BadEventError('data.tier must be a tier name');
  return v;
}
function object(v: unknown, key: string): Record<string, unknown> {
  if (!isPlainObject(v)) throw new BadEventError(`data.${key} must be an object`);
  return v;
}
function limits(v: unknown): Record<string, number> {
  const l = object(v, 'limits');
  for (const n of Object.values(l)) if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw new BadEventError('data.limits values must be non-negative integers');
  return l as Record<string, number>;
}
function retention(v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new BadEventError('data.auditRetentionDays must be a positive integer');
  return v;
}

/**
 * One lifecycle event as a patch. `org.created` sets every column (from `describeOrg`), `org.updated`
 * only the fields present, `org.suspended` the status, when (the event's own time) and why,
 * `org.resumed` clears them. The org is the event's (the token's at recording); `data.org`, if
 * given, must agree.
 */
export function lifecyclePatch(e: RecordedEvent): OrgPatch {
  const d = e.data;
  if (!isPlainObject(d)) throw new BadEventError('org event data must be a JSON object');
  if (d.org !== undefined && d.org !== e.org) throw new BadEventError('data.org is not the event\'s org');
  switch (e.type) {
    case 'org.created': {
      const createdAt = typeof d.createdAt === 'string' && !Number.isNaN(Date.parse(d.createdAt)) ? new Date(d.createdAt).toISOString() : e.recordedAt;
      return { status: 'active', tier: tier(d.tier ?? 'standard'), settings: object(d.settings ?? {}, 'settings'), limits: limits(d.limits ?? {}), audit_retention_days: retention(d.auditRetentionDays ?? 90), created_at: createdAt, suspended_at: null, suspend_reason: null };
    }
    case 'org.updated': {
      const p: OrgPatch = {};
      if (d.tier !== undefined) p.tier = tier(d.tier);
      if (d.settings !== undefined) p.settings = object(d.settings, 'settings');
      if (d.limits !== undefined) p.limits = limits(d.limits);
      if (d.auditRetentionDays !== undefined) p.audit_retention_days = retention(d.auditRetentionDays);
      return p;
    }
    case 'org.suspended': {
      if (d.reason !== undefined && typeof d.reason !== 'string') throw new BadEventError('data.reason must be a string');
      return { status: 'suspended', suspended_at: e.recordedAt, suspend_reason: (d.reason as string | undefined) ?? '' };
    }
    default:
      return { status: 'active', suspended_at: null, suspend_reason: null };
  }
}

export function isLifecycleEvent(e: RecordedEvent): boolean {
  return e.stream === ORG_LIFECYCLE_STREAM && LIFECYCLE_TYPES.has(e.type);
}

/**
 * Every org that has any event gets a row (status `active`, retention 90 days by default) spanning
 * its first and last event. ISO times of one format compare as strings. Lifecycle events of the
 * org's `org` stream are merged in log order into one patch per org; a bad one is refused (dead
 * letter) without touching the rest of the batch.
 */
export function foldOrgs(events: readonly RecordedEvent[]): FoldedOrgs {
  const spans = new Map<string, OrgSpan>();
  const lifecycle = new Map<string, OrgLifecycle>();
  const rejected: Rejected[] = [];
  for (const e of events) {
    const s = spans.get(e.org);
    if (!s) spans.set(e.org, { org_id: e.org, first_event_at: e.recordedAt, last_event_at: e.recordedAt });
    else {
      if (e.recordedAt < s.first_event_at) s.first_event_at = e.recordedAt;
      if (e.recordedAt > s.last_event_at) s.last_event_at = e.recordedAt;
    }
    if (!isLifecycleEvent(e)) continue;
    let patch: OrgPatch;
    try {
      patch = lifecyclePatch(e);
    } catch (err) {
      if (!(err instanceof BadEventError)) throw err;
      rejected.push({ event: e, error: err.message });
      continue;
    }
    const l = lifecycle.get(e.org);
    if (!l) lifecycle.set(e.org, { org_id: e.org, position: e.globalPosition.toString(), patch });
    else {
      l.patch = { ...l.patch, ...patch };
      l.position = e.globalPosition.toString();
    }
  }
  return { spans: [...spans.values()], lifecycle: [...lifecycle.values()], rejected };
}
