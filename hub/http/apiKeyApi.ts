import type { RoleGrants } from '../acl/grants.ts';
import { API_KEY_ID_RE, describeKey, parseCreateRequest } from '../access/apiKey.ts';
import { apiKeySubject, type ApiKeys } from '../access/apiKeys.ts';
import type { Revocations } from '../access/revocations.ts';
import { ANY, type EventStore } from '../eventstore/eventStore.ts';
import { HubError } from '../errors.ts';
import { adminRoute, type AdminRequest, type AdminRouteDeps } from './adminRoute.ts';
import { ACCESS_STREAM } from './revocationApi.ts';

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
  const record = async (req: AdminRequest, type: string, data: Record<string, unknown>): Promise<string | undefined> => {
    if (!deps.store) return undefined;
    try {
      const res = await deps.store.appendToStream(req.principal.org, ACCESS_STREAM, [{ type, data, metadata: { actor: req.principal.sub, session: req.requestId, node: deps.nodeId, correlationId: req.requestId } }], { expectedVersion: ANY });
      return res.ids[0];
    } catch (err) {
      if (err instanceof HubError) throw err;
      throw new HubError('unavailable', 'event store unavailable; nothing was changed', { cause: err });
    }
  };

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
    const rec = await deps.apiKeys.revoke(req.principal.org, id);
    if (!rec) throw new HubError('not_found', 'no such API key');
    // Immediate on every node: the key's principal carries jti = apikey:<id>.
    const until = Date.now() + deps.maxTtlSec * 1000;
    const { announced } = await deps.revocations.revoke({ kind: 'jti', org: req.principal.org, jti: apiKeySubject(id), until });
    const shown = describeKey(rec);
    const eventId = await record(req, 'access.apikey_revoked', { id, revokedAt: shown.revokedAt });
    deps.audit.record(req.principal.org, 'admin.action', { action: 'apikey.revoke', id, eventId, announced }, { actor: req.principal.sub, session: req.requestId });
    return { status: 200, body: { ok: true, apiKey: shown, eventId } };
  });
}
