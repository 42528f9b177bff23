import type { HttpRequest } from '@trufflesuite/uws-js-unofficial';
import type { AuditSink } from '../audit/audit.ts';
import { extractToken } from '../auth/joseVerifier.ts';
import type { Principal, TokenVerifier } from '../auth/principal.ts';
import { AuthError, HubError } from '../errors.ts';

/**
 * The credential of an HTTP request: a JWT or API key in `Authorization: Bearer`, else an API key
 * in `X-Api-Key`. Never the query string (`access_token` is for the WebSocket upgrade only: URLs end
 * up in logs). Read before the first await (uWS invalidates `req`).
 */
export function httpCredential(req: HttpRequest): string | undefined {
  return extractToken(req.getHeader('authorization'), '') ?? (req.getHeader('x-api-key') || undefined);
}

/**
 * Verifies an HTTP request's credential. A missing or bad one is a 401 with its reason, audited as
 * `session.rejected`; a dependency that is down (the revocation list, the JWKS) stays
 * `unavailable` (503): the token may be fine, the client retries as is.
 */
export async function authenticateHttp(verifier: TokenVerifier, audit: AuditSink, token: string | undefined): Promise<Principal> {
  if (!token) throw new AuthError('token_missing');
  try {
    return await verifier.verify(token);
  } catch (err) {
    if (err instanceof HubError && err.code === 'unavailable') throw err;
    audit.record(undefined, 'session.rejected', { reason: err instanceof AuthError ? err.reason : 'token_invalid', transport: 'http' });
    throw err instanceof AuthError ? err : new AuthError('token_invalid');
  }
}
