import type { HttpRequest, HttpResponse, TemplatedApp } from '@trufflesuite/uws-js-unofficial';
import type { AuditSink } from '../audit/audit.ts';
import { authenticateHttp, httpCredential } from './authenticate.ts';
import type { Principal, TokenVerifier } from '../auth/principal.ts';
import { HubError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { readBody, reply, type Reply } from './respond.ts';
import { requestIdOf } from './requestId.ts';

/** The role that administers an org (revocations, API keys). */
export const ORG_ADMIN_ROLE = 'admin';

export interface AdminRequest {
  principal: Principal;
  /** Request id: the `session` of the audit events and of the recorded admin action. */
  requestId: string;
  /** Parsed JSON body (undefined for GET/DELETE). */
  body: unknown;
  /** Path parameters in route order. */
  params: string[];
  /** The raw query string (without `?`). */
  query: string;
}

export interface AdminRouteDeps {
  app: TemplatedApp;
  verifier: TokenVerifier;
  audit: AuditSink;
  log: Logger;
}

/** A JSON answer, or a streamed one (the handler writes it through the Reply, e.g. NDJSON). */
export type AdminAnswer = { status: number; body: unknown } | { stream: (r: Reply) => Promise<void> };
export type AdminHandler = (req: AdminRequest) => Promise<AdminAnswer>;

/**
 * Mounts one org-admin route: the token is verified first (401), then the `admin` role is required
 * (403 `forbidden`, audited as `admin.denied`), then the body is read up to `maxBody` (413) and
 * parsed as JSON (400). The org is only ever the token's: no route takes an org from the caller.
 */
export function adminRoute(deps: AdminRouteDeps, method: 'post' | 'get' | 'del' | 'patch', path: string, action: string, opts: { maxBody?: number; params?: number; role?: string }, handler: AdminHandler): void {
  const { verifier, audit, log } = deps;
  const withBody = method === 'post' || method === 'patch';
  const role = opts.role ?? ORG_ADMIN_ROLE;
  deps.app[method](path, (res: HttpResponse, req: HttpRequest) => {
    const token = httpCredential(req);
    const contentType = req.getHeader('content-type');
    const query = req.getQuery() ?? '';
    const params: string[] = [];
    for (let i = 0; i < (opts.params ?? 0); i++) params.push(decodeURIComponentSafe(req.getParameter(i) ?? ''));
    const requestId = requestIdOf(req.getHeader('x-request-id'));
    const rlog = log.child({ correlationId: requestId });
    const r = reply(res, (err) => rlog.error({ err, action }, 'admin handler failed'), { requestId, log: rlog });
    const body = withBody ? readBody(res, req.getHeader('content-length'), opts.maxBody ?? 4096) : undefined;
    body?.catch(() => {});
    void (async () => {
      try {
        const principal = await authenticateHttp(verifier, audit, token);
        if (!principal.roles.includes(role)) {
          audit.record(principal.org, 'admin.denied', { action, reason: `not_${role}` }, { actor: principal.sub, session: requestId });
          throw new HubError('forbidden', `${action} needs the ${role} role`);
        }
        let json: unknown;
        if (body) {
          const buf = await body;
          // An empty body is "no body" (e.g. POST …/resume); the handler decides whether it needs one.
          if (buf.length > 0 && !/^application\/json\b/i.test(contentType)) throw new HubError('invalid', 'content-type must be application/json');
          try {
            json = buf.length === 0 ? undefined : JSON.parse(buf.toString('utf8'));
          } catch {
            throw new HubError('bad_frame', 'body is not valid JSON');
          }
        }
        const out = await handler({ principal, requestId, body: json, params, query });
        if ('stream' in out) await out.stream(r);
        else r.json(out.status, out.body);
      } catch (err) {
        r.error(err);
      }
    })();
  });
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
