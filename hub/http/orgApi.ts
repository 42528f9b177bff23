import type { OrgDirectory } from '../access/orgDirectory.ts';
import type { OrgStore } from '../access/orgStore.ts';
import type { ErasedCounts } from '../access/redisOrgEraser.ts';
import { describeOrg, isOrgId, parseCreateOrg, parseOrgChanges, parseSuspend, type OrgRecord } from '../access/org.ts';
import { ANY, type EventStore } from '../eventstore/eventStore.ts';
import { HubError } from '../errors.ts';
import { adminRoute, type AdminRequest, type AdminRouteDeps } from './adminRoute.ts';
import { mountOrgExport } from './orgExportApi.ts';
import { mountOrgOffboard, OFFBOARDED } from './orgOffboardApi.ts';

import { PLATFORM_ROLE } from '../access/apiKey.ts';

export { PLATFORM_ROLE };
/** Each org's lifecycle events (`org.created`, `org.updated`, `org.suspended`, `org.resumed`). */
export const ORG_STREAM = 'org';

export interface OrgApiDeps extends AdminRouteDeps {
  orgs: OrgDirectory;
  orgStore: OrgStore;
  /** Offboarding's Redis erasure (Access.eraseOrgData). */
  eraseOrgData?: (org: string) => Promise<ErasedCounts>;
  store?: EventStore;
  nodeId: string;
}

/**
 * The platform API (docs/access.md "Orgs"): POST/GET /v1/orgs, GET/PATCH /v1/orgs/{org},
 * POST /v1/orgs/{org}/suspend and /resume, for principals with the `platform` role: a platform JWT
 * or a platform API key (`deps.verifier` must be the platform verifier, the only one that accepts
 * those keys; docs/access.md "Platform API keys"). Each change is
 * recorded in the target org's `org` stream first (the projector folds it into the `orgs` read
 * model), then stored, applied and announced, and audited in the target org as `admin.action`.
 */
export function mountOrgApi(deps: OrgApiDeps): void {
  const opts = { role: PLATFORM_ROLE, maxBody: 16_384 };
  const record = async (req: AdminRequest, org: string, type: string, data: Record<string, unknown>) => {
    let eventId: string | undefined;
    if (deps.store) {
      try {
        const res = await deps.store.appendToStream(org, ORG_STREAM, [{ type, data, metadata: { actor: req.principal.sub, session: req.requestId, node: deps.nodeId, correlationId: req.requestId } }], { expectedVersion: ANY });
        eventId = res.ids[0];
      } catch (err) {
        if (err instanceof HubError) throw err;
        throw new HubError('unavailable', 'event store unavailable; nothing was changed', { cause: err });
      }
    }
    deps.audit.record(org, 'admin.action', { action: type, eventId, operatorOrg: req.principal.org }, { actor: req.principal.sub, session: req.requestId });
    return eventId;
  };
  const load = async (org: string): Promise<OrgRecord> => {
    if (!isOrgId(org)) throw new HubError('not_found', 'no such org');
    let r: OrgRecord | undefined;
    try {
      r = await deps.orgStore.get(org);
    } catch (err) {
      throw new HubError('unavailable', 'org directory unavailable', { cause: err });
    }
    if (!r) throw new HubError('not_found', 'no such org');
    return r;
  };

  adminRoute(deps, 'post', '/v1/orgs', 'org.create', opts, async (req) => {
    const rec = parseCreateOrg(req.body, Date.now());
    let created: boolean;
    try {
      created = await deps.orgStore.create(rec);
    } catch (err) {
      throw new HubError('unavailable', 'org directory unavailable; nothing was created', { cause: err });
    }
    if (!created) throw new HubError('conflict', 'org exists already');
    const eventId = await record(req, rec.org, 'org.created', describeOrg(rec));
    await deps.orgs.publish(rec);
    return { status: 201, body: { org: describeOrg(rec), eventId } };
  });

  adminRoute(deps, 'get', '/v1/orgs', 'org.list', opts, async () => {
    let all: OrgRecord[];
    try {
      all = await deps.orgStore.all();
    } catch (err) {
      throw new HubError('unavailable', 'org directory unavailable', { cause: err });
    }
    return { status: 200, body: { orgs: all.sort((a, b) => a.org.localeCompare(b.org)).map(describeOrg) } };
  });

  adminRoute(deps, 'get', '/v1/orgs/:org', 'org.get', { ...opts, params: 1 }, async (req) => ({ status: 200, body: { org: describeOrg(await load(req.params[0]!)) } }));

  adminRoute(deps, 'patch', '/v1/orgs/:org', 'org.update', { ...opts, params: 1 }, async (req) => {
    const changes = parseOrgChanges(req.body);
    const rec = { ...(await load(req.params[0]!)), ...changes, updatedAt: Date.now() };
    const eventId = await record(req, rec.org, 'org.updated', { org: rec.org, ...changes });
    await deps.orgs.publish(rec);
    return { status: 200, body: { org: describeOrg(rec), eventId } };
  });

  adminRoute(deps, 'post', '/v1/orgs/:org/suspend', 'org.suspend', { ...opts, params: 1 }, async (req) => {
    const { reason } = parseSuspend(req.body);
    const now = Date.now();
    const rec: OrgRecord = { ...(await load(req.params[0]!)), status: 'suspended', suspendedAt: now, suspendReason: reason, updatedAt: now };
    const eventId = await record(req, rec.org, 'org.suspended', { org: rec.org, reason });
    await deps.orgs.publish(rec);
    return { status: 200, body: { org: describeOrg(rec), eventId } };
  });

  adminRoute(deps, 'post', '/v1/orgs/:org/resume', 'org.resume', { ...opts, params: 1 }, async (req) => {
    const old = await load(req.params[0]!);
    if (old.suspendReason === OFFBOARDED) throw new HubError('conflict', 'the org was offboarded; it cannot be resumed');
    const rec: OrgRecord = { ...old, status: 'active', suspendedAt: undefined, suspendReason: undefined, updatedAt: Date.now() };
    const eventId = await record(req, rec.org, 'org.resumed', { org: rec.org });
    await deps.orgs.publish(rec);
    return { status: 200, body: { org: describeOrg(rec), eventId } };
  });

  mountOrgExport(deps, { role: PLATFORM_ROLE });
  mountOrgOffboard(deps, { role: PLATFORM_ROLE });
}
