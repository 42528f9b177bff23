import type { OrgDirectory } from '../access/orgDirectory.ts';
import type { ErasedCounts } from '../access/redisOrgEraser.ts';
import type { OrgStore } from '../access/orgStore.ts';
import { describeOrg, isOrgId, type OrgRecord } from '../access/org.ts';
import type { EventStore } from '../eventstore/eventStore.ts';
import { HubError } from '../errors.ts';
import { adminRoute, type AdminRouteDeps } from './adminRoute.ts';

/** The directory's tombstone: an offboarded org stays suspended with this reason and cannot be resumed. */
export const OFFBOARDED = 'offboarded';
/** How long offboarding waits for this node's audit buffer to reach the store before erasing. */
const AUDIT_DRAIN_MS = 5_000;

/**
 * POST /v1/orgs/{org}/offboard (platform role; docs/access.md "Offboarding"). The org must be
 * suspended first (its sessions are closed and new ones refused) and the body must name it again
 * (`{"confirm":"<org>"}`). Its events, stream versions and read-model rows are deleted in one
 * transaction (`orghub_offboard_org`), which leaves a row in `org_tombstones`; the directory keeps
 * the org as a tombstone (suspended, reason `offboarded`, no settings or limits), so the id cannot be
 * provisioned or resumed again by mistake. Then the org's Redis data (retained messages, MQTT
 * sessions, history, presence, API keys, revocations) is erased (`eraseOrgData`). Audited in the
 * operator's own org, never the erased one.
 */
export function mountOrgOffboard(deps: AdminRouteDeps & { orgs: OrgDirectory; orgStore: OrgStore; store?: EventStore; eraseOrgData?: (org: string) => Promise<ErasedCounts> }, opts: { role: string }): void {
  adminRoute(deps, 'post', '/v1/orgs/:org/offboard', 'org.offboard', { role: opts.role, params: 1, maxBody: 1024 }, async (req) => {
    const org = req.params[0]!;
    if (!isOrgId(org)) throw new HubError('not_found', 'no such org');
    const b = req.body as Record<string, unknown> | undefined;
    if (typeof b !== 'object' || b === null || Array.isArray(b) || Object.keys(b).some((k) => k !== 'confirm') || b.confirm !== org) {
      throw new HubError('invalid', 'body must be {"confirm":"<org>"} naming the org being offboarded');
    }
    let rec: OrgRecord | undefined;
    try {
      rec = await deps.orgStore.get(org);
    } catch (err) {
      throw new HubError('unavailable', 'org directory unavailable', { cause: err });
    }
    if (!rec) throw new HubError('not_found', 'no such org');
    if (rec.status !== 'suspended') throw new HubError('conflict', 'suspend the org first (POST /v1/orgs/{org}/suspend)');
    const store = deps.store;
    if (!store?.eraseOrg) throw new HubError('unavailable', 'this event store cannot erase an org');
    // Audit events of the org still buffered on this node would land after the erasure.
    const deadline = Date.now() + AUDIT_DRAIN_MS;
    while (deps.audit.stats().backlog > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    let eventsDeleted: number;
    try {
      eventsDeleted = await store.eraseOrg(org, req.principal.sub);
    } catch (err) {
      if (err instanceof HubError) throw err;
      throw new HubError('unavailable', 'event store unavailable; nothing was erased', { cause: err });
    }
    const now = Date.now();
    const tomb: OrgRecord = { ...rec, status: 'suspended', suspendReason: OFFBOARDED, suspendedAt: rec.suspendedAt ?? now, settings: {}, limits: {}, updatedAt: now };
    await deps.orgs.publish(tomb);
    // After the tombstone: should Redis fail here, the org stays dead and offboarding can be run again.
    let redisKeysDeleted: ErasedCounts | undefined;
    try {
      redisKeysDeleted = await deps.eraseOrgData?.(org);
    } catch (err) {
      deps.audit.record(req.principal.org, 'admin.action', { action: 'org.offboard', org, eventsDeleted, redisErased: false }, { actor: req.principal.sub, session: req.requestId });
      throw new HubError('unavailable', 'events and read models erased, Redis data not: run offboarding again once Redis answers', { cause: err });
    }
    deps.audit.record(req.principal.org, 'admin.action', { action: 'org.offboard', org, eventsDeleted, redisKeysDeleted }, { actor: req.principal.sub, session: req.requestId });
    return { status: 200, body: { org: describeOrg(tomb), eventsDeleted, redisKeysDeleted: redisKeysDeleted ?? null } };
  });
}
