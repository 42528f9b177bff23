import { ruleFromRequest, type RevocationRule } from '../access/revocation.ts';
import type { Revocations } from '../access/revocations.ts';
import { ANY, type EventStore } from '../eventstore/eventStore.ts';
import { HubError } from '../errors.ts';
import { adminRoute, type AdminRouteDeps } from './adminRoute.ts';

import { ACCESS_STREAM } from '../access/keyLifecycle.ts';

export { ACCESS_STREAM };

export interface RevocationApiDeps extends AdminRouteDeps {
  revocations: Revocations;
  store?: EventStore;
  nodeId: string;
  maxTtlSec: number;
}

/** The rule as the API shows it: no org (always the caller's), times as ISO strings. */
export function describeRule(r: RevocationRule): Record<string, unknown> {
  const base = { kind: r.kind, expiresAt: new Date(r.until).toISOString() };
  switch (r.kind) {
    case 'jti':
      return { ...base, jti: r.jti };
    case 'session':
      return { ...base, session: r.session };
    case 'sub':
      return { ...base, sub: r.sub, issuedBefore: r.issuedBefore };
  }
}

/**
 * POST /v1/revocations (docs/access.md): an org admin revokes a token (`jti`), a user's tokens
 * (`sub`, `sub` + `issuedBefore`) or one live session, in the admin's own org. The revocation is
 * recorded in the event store first (`access.revoked`), then stored and announced; the 200 means
 * every node that is connected to NATS has been told.
 */
export function mountRevocationApi(deps: RevocationApiDeps): void {
  adminRoute(deps, 'post', '/v1/revocations', 'revoke', { maxBody: 4096 }, async ({ principal, requestId, body }) => {
    const rule = ruleFromRequest(principal.org, body, Date.now(), deps.maxTtlSec);
    const data = describeRule(rule);
    let eventId: string | undefined;
    if (deps.store) {
      try {
        const res = await deps.store.appendToStream(
          principal.org,
          ACCESS_STREAM,
          [{ type: 'access.revoked', data, metadata: { actor: principal.sub, session: requestId, node: deps.nodeId, correlationId: requestId } }],
          { expectedVersion: ANY },
        );
        eventId = res.ids[0];
      } catch (err) {
        if (err instanceof HubError) throw err;
        throw new HubError('unavailable', 'event store unavailable; nothing was revoked', { cause: err });
      }
    }
    const { announced } = await deps.revocations.revoke(rule);
    deps.audit.record(principal.org, 'admin.action', { action: 'revoke', ...data, eventId, announced }, { actor: principal.sub, session: requestId });
    return { status: 200, body: { ok: true, revocation: data, eventId, announced } };
  });
}
