import type { HttpResponse, HttpRequest } from '@trufflesuite/uws-js-unofficial';
import { randomUUID } from 'node:crypto';
import { compileGrants, type RoleGrants } from '../acl/grants.ts';
import type { AuditSink } from '../audit/audit.ts';
import { authenticateHttp, httpCredential } from './authenticate.ts';
import type { TokenVerifier } from '../auth/principal.ts';
import type { ClientContext } from '../core/context.ts';
import { HubError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { readBody, reply } from './respond.ts';

export interface RouteDeps {
  verifier: TokenVerifier;
  roleGrants: RoleGrants;
  audit: AuditSink;
  log: Logger;
  maxBody: number;
}

/** What a handler gets: the verified context, the route parameters, the query string and the parsed JSON body (when the route has one). */
export interface RouteInput {
  ctx: ClientContext;
  params: string[];
  query: URLSearchParams;
  body: unknown;
}

export type RouteHandler = (input: RouteInput) => Promise<{ status: number; body: unknown }>;

/**
 * Wraps a handler for uWS: copies what it needs from `req` before any await, authenticates the
 * token (a refusal is audited as `session.rejected`), reads and parses a JSON body when `withBody`,
 * and answers HubErrors with their status and code (docs/protocol.md, "HTTP API").
 */
export function authRoute(deps: RouteDeps, nParams: number, withBody: boolean, handler: RouteHandler) {
  return (res: HttpResponse, req: HttpRequest) => {
    const token = httpCredential(req);
    const contentType = req.getHeader('content-type');
    const query = new URLSearchParams(req.getQuery() ?? '');
    const params = Array.from({ length: nParams }, (_, i) => decodeURIComponent(req.getParameter(i) ?? ''));
    const r = reply(res, (err) => deps.log.error({ err }, 'http handler failed'));
    const body = withBody ? readBody(res, req.getHeader('content-length'), deps.maxBody) : Promise.resolve(Buffer.alloc(0));
    body.catch(() => {});
    void (async () => {
      try {
        const principal = await authenticateHttp(deps.verifier, deps.audit, token);
        const buf = await body;
        let json: unknown;
        if (withBody) {
          if (!/^application\/json\b/i.test(contentType)) throw new HubError('invalid', 'content-type must be application/json');
          try {
            json = JSON.parse(buf.toString('utf8'));
          } catch {
            throw new HubError('bad_frame', 'body is not valid JSON');
          }
        }
        const ctx: ClientContext = { principal, grants: compileGrants(principal, deps.roleGrants), session: randomUUID() };
        const out = await handler({ ctx, params, query, body: json });
        r.json(out.status, out.body);
      } catch (err) {
        r.error(err);
      }
    })();
  };
}

/** The ajv error of a failed validation as an `invalid` HubError naming the field. */
export function invalidBody(v: { errors?: { instancePath: string; message?: string }[] | null }): HubError {
  const e = v.errors?.[0];
  return new HubError('invalid', `body${e?.instancePath ?? ''} ${e?.message ?? 'is invalid'}`);
}
