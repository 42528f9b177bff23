import type { HttpRequest, HttpResponse, us_socket_context_t } from '@trufflesuite/uws-js-unofficial';
import { randomUUID } from 'node:crypto';
import { compileGrants } from '../../acl/grants.ts';
import { extractToken } from '../../auth/joseVerifier.ts';
import type { Principal } from '../../auth/principal.ts';
import { AuthError, HubError } from '../../errors.ts';
import type { Admission } from '../../limits/limitService.ts';
import type { Logger } from '../../log.ts';
import { SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, type Encoding } from '../../protocol/frames.ts';
import type { Conn, WsDeps } from './wsTypes.ts';

function pickProtocol(header: string): Encoding | undefined | null {
  if (!header) return undefined; // none offered: JSON, and no protocol echoed
  for (const p of header.split(',')) {
    const name = p.trim();
    if (name === SUBPROTOCOL_JSON) return 'json';
    if (name === SUBPROTOCOL_MSGPACK) return 'msgpack';
  }
  return null;
}

/**
 * The upgrade of `/v1/ws`: subprotocol, token (Authorization, X-Api-Key or `access_token`), the
 * connection slots per IP (before the token is checked), org and user, then the socket's state.
 * Every refusal is an HTTP answer with a stable reason and an audit event.
 */
export function wsUpgrade(deps: WsDeps, connLog: (session: string) => Logger, debugOn: boolean) {
  const { audit, rateLimits, verifier, roleGrants } = deps;
  return (res: HttpResponse, req: HttpRequest, context: us_socket_context_t): void => {
    // Everything needed from req is copied before the first await (uWS invalidates it).
    const key = req.getHeader('sec-websocket-key');
    const protoHeader = req.getHeader('sec-websocket-protocol');
    const extensions = req.getHeader('sec-websocket-extensions');
    // An API key may also come as X-Api-Key (docs/access.md); a JWT or a key in Bearer wins.
    const token = extractToken(req.getHeader('authorization'), req.getQuery() ?? '') ?? (req.getHeader('x-api-key') || undefined);
    const ip = Buffer.from(res.getRemoteAddressAsText()).toString();
    const session = randomUUID();
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    const refuse = (status: string, reason: string) => {
      if (!aborted) res.cork(() => res.writeStatus(status).writeHeader('content-type', 'text/plain').end(reason));
    };
    const enc = pickProtocol(protoHeader);
    if (enc === null) {
      audit.record(undefined, 'session.rejected', { reason: 'unsupported_subprotocol', transport: 'ws' });
      return refuse('400 Bad Request', 'unsupported_subprotocol');
    }
    if (!token) {
      audit.record(undefined, 'session.rejected', { reason: 'token_missing', transport: 'ws' });
      return refuse('401 Unauthorized', 'token_missing');
    }
    const capped = (a: Admission & { ok: false }, org: string | undefined) => {
      rateLimits.hit(a.limit, 'ws');
      audit.record(org, 'limit.hit', { limit: a.limit, max: a.max, transport: 'ws' });
      refuse('429 Too Many Requests', 'connection_limit');
    };
    // Slots are taken before the token is checked (per IP) and after (org, user); a refusal or
    // an abort on the way gives back what was taken.
    const admitted = (async () => {
      const byIp = await rateLimits.admitIp(ip);
      if (!byIp.ok) return { refused: byIp, org: undefined };
      let principal: Principal;
      try {
        principal = await verifier.verify(token);
      } catch (err) {
        rateLimits.release(byIp.slots);
        throw err;
      }
      const byOrg = await rateLimits.admit(principal);
      if (!byOrg.ok) {
        rateLimits.release(byIp.slots);
        return { refused: byOrg, org: principal.org };
      }
      const lim = rateLimits.connection(principal, 'ws');
      await lim.settle('pub');
      return { principal, lim, slots: [...byIp.slots, ...byOrg.slots] };
    })();
    admitted.then(
      (a) => {
        if ('refused' in a) return capped(a.refused as Admission & { ok: false }, a.org);
        const { principal } = a;
        if (aborted) return rateLimits.release(a.slots);
        const conn: Conn = {
          principal,
          grants: compileGrants(principal, roleGrants),
          session,
          enc: enc ?? 'json',
          subs: [],
          expMs: principal.exp * 1000,
          openedAt: Date.now(),
          lastSeen: Date.now(),
          pinged: false,
          closed: false,
          lim: a.lim,
          slots: a.slots,
          inflight: 0,
        };
        const proto = enc === undefined ? '' : enc === 'json' ? SUBPROTOCOL_JSON : SUBPROTOCOL_MSGPACK;
        // Not corked: uWS's cork() after an ASYNC upgrade can mistake the new WebSocket for the old
        // HTTP response (the socket's memory is reallocated in place) and close it ~1 ms after
        // `open`, a dirty 1006 on both ends (uNetworking/uWebSockets#1928, fixed upstream by #1929,
        // not in the 20.30 build we use). Seen here as a connection dropped right after upgrade.
        res.upgrade(conn, key, proto, extensions, context);
      },
      (err) => {
        if (err instanceof HubError && err.code === 'unavailable') {
          // The keys could not be fetched: our problem, not the token's. The client retries as is.
          connLog(session).warn({ err: err.message }, 'token keys unavailable');
          return refuse('503 Service Unavailable', err.message);
        }
        const reason = err instanceof AuthError ? err.reason : 'token_invalid';
        if (!(err instanceof AuthError)) connLog(session).warn({ err }, 'token verification failed unexpectedly');
        else if (debugOn) connLog(session).debug({ reason }, 'ws upgrade refused');
        audit.record(undefined, 'session.rejected', { reason, transport: 'ws' });
        refuse('401 Unauthorized', reason);
      },
    );
  };
}
