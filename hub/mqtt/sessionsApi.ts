import type { TemplatedApp } from '@trufflesuite/uws-js-unofficial';
import type { AuditSink } from '../audit/audit.ts';
import { authenticateHttp, httpCredential } from '../http/authenticate.ts';
import type { TokenVerifier } from '../auth/principal.ts';
import { HubError } from '../errors.ts';
import { reply } from '../http/respond.ts';
import type { Logger } from '../log.ts';
import type { SessionStore } from './sessionStore.ts';

/** Sessions listed per request unless `limit` says otherwise, and the most `limit` may ask for. */
export const SESSIONS_PAGE = 100;
export const SESSIONS_PAGE_MAX = 1000;

/** The `limit` query parameter: absent → the default; otherwise an integer in [1, SESSIONS_PAGE_MAX]. */
export function parseLimit(query: string): number {
  const raw = new URLSearchParams(query).get('limit');
  if (raw === null) return SESSIONS_PAGE;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 1 || n > SESSIONS_PAGE_MAX) throw new HubError('invalid', `limit must be an integer from 1 to ${SESSIONS_PAGE_MAX}`);
  return n;
}

/**
 * `GET /v1/mqtt/sessions`: an org admin lists the persistent MQTT sessions of **the token's org**
 * (no parameter names an org), with queue length, drops and last activity. Others get 403.
 */
export function mountMqttSessionsApi(app: TemplatedApp, deps: { verifier: TokenVerifier; store: SessionStore; audit: AuditSink; log: Logger }): void {
  app.get('/v1/mqtt/sessions', (res, req) => {
    const query = req.getQuery() ?? '';
    const token = httpCredential(req);
    const r = reply(res, (err) => deps.log.error({ err }, 'mqtt sessions api failed'));
    void (async () => {
      try {
        const principal = await authenticateHttp(deps.verifier, deps.audit, token);
        if (!principal.roles.includes('admin')) throw new HubError('forbidden', 'listing MQTT sessions needs the admin role');
        const limit = parseLimit(query);
        let sessions;
        try {
          sessions = await deps.store.list(principal.org, limit);
        } catch (err) {
          throw new HubError('unavailable', 'session store unavailable', { cause: err });
        }
        r.json(200, {
          sessions: sessions.map((s) => ({ ...s, lastActivity: new Date(s.lastActivity).toISOString(), expiresAt: new Date(s.expiresAt).toISOString() })),
          limit,
        });
      } catch (err) {
        r.error(err);
      }
    })();
  });
}
