/**
 * The query API (docs/query-api.md): org-scoped, paginated reads of the read models, and a streamed
 * CSV export of the audit log. JWT-authenticated like the rest of the HTTP API; the org comes only
 * from the verified token. Which roles may read which model is the `read` list of the role grants.
 */
import type { HttpRequest, HttpResponse, TemplatedApp } from '@trufflesuite/uws-js-unofficial';
import { compileGrants, type RoleGrants } from '../acl/grants.ts';
import type { AuditSink } from '../audit/audit.ts';
import { authenticateHttp, httpCredential } from './authenticate.ts';
import type { Principal, TokenVerifier } from '../auth/principal.ts';
import { HubError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { decodeCursor, encodeCursor } from '../readmodels/cursor.ts';
import { auditCsvHeader, auditCsvRows } from '../readmodels/csv.ts';
import { parseId, parseQuery, type Listing } from '../readmodels/filters.ts';
import type { AuditFilter, CommandFilter, Page, PageRequest, ReadModelName, ReadModels } from '../readmodels/readModels.ts';
import { reply, type Reply, type StreamWriter } from './respond.ts';
import { requestIdOf } from './requestId.ts';

export interface QueryApiDeps {
  app: TemplatedApp;
  verifier: TokenVerifier;
  roleGrants: RoleGrants;
  audit: AuditSink;
  /** Undefined when the hub runs without Postgres: every route answers 503 `unavailable`. */
  readModels?: ReadModels;
  log: Logger;
  cursorKey: string;
  /** Rows per page of a CSV export. */
  exportPageSize: number;
  /** Requests one org may have in flight on this node (an export counts until it ends). */
  maxPerOrg: number;
}

/** What a handler gets: copied out of the uWS request before anything async happens. */
interface Request {
  query: string;
  accept: string;
  /** The first route parameter, raw (still percent-encoded). */
  param: string;
  requestId: string;
}

type Handler = (principal: Principal, req: Request, r: Reply, models: ReadModels) => Promise<void>;

export function mountQueryApi(deps: QueryApiDeps): void {
  const { app, verifier, roleGrants, audit, log } = deps;
  /** In-flight requests per org on this node: the per-org bound on the shared query pool. */
  const inFlight = new Map<string, number>();

  const route = (model: ReadModelName, handler: Handler) => (res: HttpResponse, req: HttpRequest) => {
    const query = req.getQuery() ?? '';
    const token = httpCredential(req);
    const requestId = requestIdOf(req.getHeader('x-request-id'));
    const request: Request = { query, accept: req.getHeader('accept'), param: req.getParameter(0) ?? '', requestId };
    const rlog = log.child({ correlationId: requestId });
    const r = reply(res, (err) => rlog.error({ err }, 'query handler failed'), { requestId, log: rlog });
    void (async () => {
      try {
        const principal = await authenticateHttp(verifier, audit, token);
        if (!compileGrants(principal, roleGrants).canRead(model)) throw new HubError('forbidden', `no read grant for ${model}`);
        if (!deps.readModels) throw new HubError('unavailable', 'read models are not enabled on this hub (ORGHUB_EVENT_STORE=none)');
        if (r.done) return; // the client left while we verified
        const org = principal.org;
        const n = inFlight.get(org) ?? 0;
        if (n >= deps.maxPerOrg) throw new HubError('limit', `too many queries in flight for this org (at most ${deps.maxPerOrg}); retry when one has finished`);
        inFlight.set(org, n + 1);
        try {
          await handler(principal, request, r, deps.readModels);
        } finally {
          const left = (inFlight.get(org) ?? 1) - 1;
          if (left === 0) inFlight.delete(org);
          else inFlight.set(org, left);
        }
      } catch (err) {
        if (!r.done) r.error(err);
        else if (!(err instanceof HubError)) log.error({ err }, 'query handler failed after the response started');
      }
    })();
  };

  /** A JSON listing: filters, cursor in, `{items, nextCursor}` out. */
  const listing = <F extends object, T>(name: Listing, read: (m: ReadModels, org: string, f: F, p: PageRequest) => Promise<Page<T>>): Handler =>
    async (principal, req, r, models) => {
      const q = parseQuery<F>(name, req.query);
      const scope = { listing: name, org: principal.org, filter: q.filter };
      const after = q.cursor === undefined ? undefined : decodeCursor(deps.cursorKey, scope, q.cursor);
      const page = await read(models, principal.org, q.filter, { limit: q.limit, after });
      r.json(200, { items: page.items, nextCursor: page.next ? encodeCursor(deps.cursorKey, scope, page.next) : null });
    };

  const auditList = listing<AuditFilter, unknown>('audit', (m, org, f, p) => m.audit(org, f, p));

  app.get(
    '/v1/audit',
    route('audit', async (principal, req, r, models) => {
      const q = parseQuery<AuditFilter>('audit', req.query);
      const csv = q.format === 'csv' || (q.format === undefined && /\btext\/csv\b/i.test(req.accept));
      if (!csv) return auditList(principal, req, r, models);
      if (q.cursor !== undefined) throw new HubError('invalid', 'a CSV export covers the whole filtered range; it takes no cursor');
      const outcome = await exportCsv(principal.org, q.filter, r, models);
      // Who took a copy of the audit log, of what range, is itself audit (a failed export too, once
      // its first page was read: a 503 before that sent nothing). Pages of JSON are not recorded.
      audit.record(principal.org, 'admin.action', { action: 'audit.export', filter: q.filter, ...outcome }, { actor: principal.sub, session: req.requestId });
    }),
  );

  /**
   * Streams every matching entry, a page per short transaction, writing each page only when uWS has
   * drained the previous one, so memory stays at about one page whatever the range. The first page
   * is read before anything is sent, so a database that is down still gets a clean 503.
   */
  async function exportCsv(org: string, filter: AuditFilter, r: Reply, models: ReadModels): Promise<{ rows: number; complete: boolean }> {
    let out: StreamWriter | undefined;
    let rows = 0;
    const send = (text: string): Promise<boolean> => {
      const first = out === undefined;
      out ??= r.stream({ 'content-type': 'text/csv; charset=utf-8', 'content-disposition': 'attachment; filename="audit.csv"', 'cache-control': 'no-store' });
      return out.write(first ? auditCsvHeader() + text : text);
    };
    try {
      await models.exportAudit(org, filter, deps.exportPageSize, (page) => {
        rows += page.length;
        return send(auditCsvRows(page));
      });
    } catch (err) {
      if (!out) throw err;
      log.warn({ err: (err as Error).message }, 'audit CSV export failed mid-stream; connection cut');
      out.fail();
      return { rows, complete: false };
    }
    if (!out) await send(''); // an empty range still gets its header line
    out!.end();
    return { rows, complete: true };
  }

  app.get('/v1/devices', route('devices', listing('devices', (m, org, f, p) => m.devices(org, f, p))));

  app.get(
    '/v1/devices/:id',
    route('devices', async (principal, req, r, models) => {
      const id = parseId(req.param);
      for (const k of new URLSearchParams(req.query).keys()) {
        if (k !== 'access_token') throw new HubError('invalid', 'GET /v1/devices/{id} takes no query parameters');
      }
      const device = await models.device(principal.org, id);
      // Another org's device id is simply not found under this org's RLS: the same 404 as a missing one.
      if (!device) throw new HubError('not_found', 'no such device');
      r.json(200, device);
    }),
  );

  app.get('/v1/sessions', route('sessions', listing('sessions', (m, org, f, p) => m.sessions(org, f, p))));
  app.get('/v1/commands', route('commands', listing('commands', (m, org, f, p) => m.commands(org, f, p))));

  /** One device's commands (generic and fleet), newest first: `GET /v1/commands?device=<id>` under a device path. */
  app.get(
    '/v1/devices/:id/commands',
    route('commands', async (principal, req, r, models) => {
      const device = parseId(req.param);
      const q = parseQuery<CommandFilter>('commands', req.query);
      if (q.filter.device !== undefined) throw new HubError('invalid', 'the device is named by the path; drop the device parameter');
      const filter = { ...q.filter, device };
      const scope = { listing: 'commands' as const, org: principal.org, filter };
      const after = q.cursor === undefined ? undefined : decodeCursor(deps.cursorKey, scope, q.cursor);
      const page = await models.commands(principal.org, filter, { limit: q.limit, after });
      r.json(200, { items: page.items, nextCursor: page.next ? encodeCursor(deps.cursorKey, scope, page.next) : null });
    }),
  );

  /** The per-status summary of a bulk fleet command; another org's id is not found, like a missing one. */
  app.get(
    '/v1/fleet/commands/:id',
    route('commands', async (principal, req, r, models) => {
      const id = req.param.toLowerCase();
      if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(id)) throw new HubError('invalid', 'a fleet command id is a UUID');
      for (const k of new URLSearchParams(req.query).keys()) {
        if (k !== 'access_token') throw new HubError('invalid', 'GET /v1/fleet/commands/{id} takes no query parameters');
      }
      const summary = await models.fleetSummary(principal.org, id);
      if (!summary) throw new HubError('not_found', 'no such fleet command');
      r.json(200, summary);
    }),
  );
}
