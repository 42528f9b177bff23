import { API_KEY_ID_RE, parsePlatformKeyRequest, PLATFORM_KEY_ORG, PLATFORM_ROLE } from '../access/apiKey.ts';
import type { PlatformKeys } from '../access/keyLifecycle.ts';
import { HubError } from '../errors.ts';
import { adminRoute, type AdminRequest, type AdminRouteDeps } from './adminRoute.ts';

export interface PlatformKeyApiDeps extends AdminRouteDeps {
  platformKeys: PlatformKeys;
  nodeId: string;
}

/**
 * POST/GET /v1/platform/apikeys and DELETE /v1/platform/apikeys/{id} (docs/access.md "Platform API
 * keys"), for a platform operator's JWT. `deps.verifier` is the ordinary one, which refuses platform
 * keys (401 `api_key_platform_only`): a leaked platform key cannot mint more keys that would outlive
 * its revocation. Recorded in `_platform`'s `access` stream and audited there as `admin.action`,
 * with the operator's org.
 */
export function mountPlatformKeyApi(deps: PlatformKeyApiDeps): void {
  const opts = { role: PLATFORM_ROLE, maxBody: 4096 };
  const by = (req: AdminRequest) => ({ actor: req.principal.sub, session: req.requestId, node: deps.nodeId });
  const audit = (req: AdminRequest, data: Record<string, unknown>) => deps.audit.record(PLATFORM_KEY_ORG, 'admin.action', { ...data, operatorOrg: req.principal.org }, { actor: req.principal.sub, session: req.requestId });

  adminRoute(deps, 'post', '/v1/platform/apikeys', 'platform_key.create', opts, async (req) => {
    const out = await deps.platformKeys.create(parsePlatformKeyRequest(req.body, Date.now()), by(req));
    audit(req, { action: 'platform_key.create', id: out.apiKey.id, eventId: out.eventId });
    // The only time the key is ever shown: only its HMAC is stored.
    return { status: 201, body: out };
  });

  adminRoute(deps, 'get', '/v1/platform/apikeys', 'platform_key.list', opts, async () => ({ status: 200, body: { apiKeys: await deps.platformKeys.list() } }));

  adminRoute(deps, 'del', '/v1/platform/apikeys/:id', 'platform_key.revoke', { ...opts, params: 1 }, async (req) => {
    const id = req.params[0] ?? '';
    if (!API_KEY_ID_RE.test(id)) throw new HubError('not_found', 'no such platform API key');
    const out = await deps.platformKeys.revoke(id, by(req));
    if (!out) throw new HubError('not_found', 'no such platform API key');
    audit(req, { action: 'platform_key.revoke', id, eventId: out.eventId, announced: out.announced });
    return { status: 200, body: { ok: true, apiKey: out.apiKey, eventId: out.eventId } };
  });
}
