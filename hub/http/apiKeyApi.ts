import type { RoleGrants } from '../acl/grants.ts';
import { API_KEY_ID_RE, describeKey, parseCreateRequest } from '../access/apiKey.ts';
import type { ApiKeys } from '../access/apiKeys.ts';
import { recordAccessEvent, revokeKey } from '../access/keyLifecycle.ts';
import type { Revocations } from '../access/revocations.ts';
import type { EventStore } from '../eventstore/eventStore.ts';
import { HubError } from '../errors.ts';
import { adminRoute, type AdminRequest, type AdminRouteDeps } from './adminRoute.ts';

export interface ApiKeyApiDeps extends AdminRouteDeps {
  apiKeys: ApiKeys;
  revocations: Revocations;
  roleGrants: RoleGrants;
  store?: EventStore;
  nodeId: string;
  maxTtlSec: number;
}

/**
 * POST/GET /v1/apikeys and DELETE /v1/apikeys/{id} (docs/access.md), for org admins in their own
 * org. Every step is recorded in the org's `access` stream (never the secret or its hash) and
 * audited as `admin.action`. Another org's key id answers 404, exactly like an unknown one.
 */
export function mountApiKeyApi(deps: ApiKeyApiDeps): void {
  const record = (req: AdminRequest, type: string, data: Record<string, unknown>) => recordAccessEvent(deps.store, req.principal.org, type, data, { actor: req.principal.sub, session: req.requestId, node: deps.nodeId });

  adminRoute(deps, 'post', '/v1/apikeys', 'apikey.create', { maxBody: 16_384 }, async (req) => {
    const parsed = parseCreateRequest(req.body, deps.roleGrants, Date.now());
    const { key, record: rec } = await deps.apiKeys.create(req.principal.org, req.principal.sub, parsed);
    const shown = describeKey(rec);
    const eventId = await record(req, 'access.apikey_created', shown);
    deps.audit.record(req.principal.org, 'admin.action', { action: 'apikey.create', id: rec.id, roles: rec.roles, eventId }, { actor: req.principal.sub, session: req.requestId });
    // The only time the key is ever shown: only its HMAC is stored.
    return { status: 201, body: { key, apiKey: shown, eventId } };
  });

  adminRoute(deps, 'get', '/v1/apikeys', 'apikey.list', {}, async (req) => {
    const list = await deps.apiKeys.list(req.principal.org);
    return { status: 200, body: { apiKeys: list.map(describeKey) } };
  });

  adminRoute(deps, 'del', '/v1/apikeys/:id', 'apikey.revoke', { params: 1 }, async (req) => {
    const id = req.params[0] ?? '';
    if (!API_KEY_ID_RE.test(id)) throw new HubError('not_found', 'no such API key');
    // Immediate on every node: the key's principal carries jti = apikey:<id>.
    const done = await revokeKey(deps, req.principal.org, id);
    if (!done) throw new HubError('not_found', 'no such API key');
    const { announced } = done;
    const shown = describeKey(done.record);
    const eventId = await record(req, 'access.apikey_revoked', { id, revokedAt: shown.revokedAt });
    deps.audit.record(req.principal.org, 'admin.action', { action: 'apikey.revoke', id, eventId, announced }, { actor: req.principal.sub, session: req.requestId });
    return { status: 200, body: { ok: true, apiKey: shown, eventId } };
  });
}
