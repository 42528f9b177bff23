import type { TemplatedApp, HttpResponse, HttpRequest } from '@trufflesuite/uws-js-unofficial';
import { Ajv } from 'ajv';
import { compileGrants, type RoleGrants } from '../acl/grants.ts';
import type { AuditSink } from '../audit/audit.ts';
import { authenticateHttp, httpCredential } from './authenticate.ts';
import type { TokenVerifier } from '../auth/principal.ts';
import type { CommandHandler } from '../core/commands.ts';
import type { ClientContext } from '../core/context.ts';
import { payloadOf, type Publisher } from '../core/publisher.ts';
import { HubError, RateLimitedError } from '../errors.ts';
import type { RateLimits } from '../limits/connLimits.ts';
import type { LimitService } from '../limits/limitService.ts';
import type { Logger } from '../log.ts';
import { readBody, reply } from './respond.ts';
import { requestIdOf } from './requestId.ts';

export interface HttpApiDeps {
  app: TemplatedApp;
  verifier: TokenVerifier;
  roleGrants: RoleGrants;
  publisher: Publisher;
  audit: AuditSink;
  commands?: CommandHandler;
  limits: LimitService;
  log: Logger;
  maxBody: number;
  maxBatch: number;
}

const message = { type: 'object', required: ['topic', 'data'], properties: { topic: { type: 'string', minLength: 1, maxLength: 512 }, data: {} }, additionalProperties: false };
const command = {
  type: 'object',
  required: ['type', 'topic', 'data'],
  properties: { type: { type: 'string', minLength: 1, maxLength: 128 }, topic: { type: 'string', minLength: 1, maxLength: 512 }, data: {}, key: { type: 'string', minLength: 1, maxLength: 200 } },
  additionalProperties: false,
};

/** The HTTP API for backends: publish, batch publish and commands, with the WebSocket's auth and ACL. */
export function mountHttpApi(deps: HttpApiDeps): void {
  const { app, verifier, roleGrants, publisher, audit, log } = deps;
  const ajv = new Ajv({ allErrors: false });
  const validateOne = ajv.compile(message);
  const validateBatch = ajv.compile({ type: 'array', minItems: 1, maxItems: deps.maxBatch, items: message });
  const validateCommand = ajv.compile(command);
  const invalid = (v: { errors?: { instancePath: string; message?: string }[] | null }) => {
    const e = v.errors?.[0];
    return new HubError('invalid', `body${e?.instancePath ?? ''} ${e?.message ?? 'is invalid'}`);
  };

  /**
   * Per (org, user): HTTP requests share the user's and org's leases; bounded, rebuilt when full,
   * and rebuilt when the org's limits changed (a new tier or override from the org directory).
   */
  const perUser = new Map<string, { of: unknown; l: RateLimits }>();
  const limitsFor = (ctx: ClientContext): RateLimits => {
    const k = `${ctx.principal.org}\u0000${ctx.principal.sub}`;
    const of = deps.limits.limitsOf(ctx.principal.org);
    let e = perUser.get(k);
    if (!e || e.of !== of) {
      if (perUser.size >= 10_000) perUser.clear();
      perUser.set(k, (e = { of, l: deps.limits.connection(ctx.principal, 'http') }));
    }
    return e.l;
  };
  /** Size and rate checks before anything is published; throws `too_large` or `rate_limited`. */
  const admit = async (ctx: ClientContext, kind: 'pub' | 'cmd', bytes: number[]) => {
    await deps.limits.prepare(ctx.principal.org);
    const lim = limitsFor(ctx);
    if (bytes.some((b) => b > lim.maxMessageBytes)) {
      lim.hit('message_size');
      throw new HubError('too_large', `message payload above ${lim.maxMessageBytes} bytes (the org's tier)`);
    }
    await lim.settle(kind);
    let wait = kind === 'pub' ? lim.publish(bytes.length) : lim.command();
    // A request can wait one round trip: if the lease ran dry and a refill is under way, take its result.
    if (wait > 0 && lim.refilling(kind)) {
      await lim.settle(kind);
      wait = kind === 'pub' ? lim.publish(bytes.length) : lim.command();
    }
    if (wait > 0) {
      audit.record(ctx.principal.org, 'limit.hit', { limit: kind === 'pub' ? 'rate_publish' : 'rate_command', transport: 'http' }, { actor: ctx.principal.sub, session: ctx.session });
      throw new RateLimitedError(wait, kind === 'pub' ? 'publish' : 'command');
    }
  };

  /** Authenticates, reads and parses the body; the handler gets a verified context and JSON. */
  const route = (handler: (ctx: ClientContext, body: unknown) => Promise<{ status: number; body: unknown }> | { status: number; body: unknown }) => (res: HttpResponse, req: HttpRequest) => {
    // Header only: a token in a URL ends up in access logs and proxies; the query form exists for
    // browsers' WebSocket upgrades alone (docs/protocol.md).
    const token = httpCredential(req);
    const contentType = req.getHeader('content-type');
    const requestId = requestIdOf(req.getHeader('x-request-id'));
    const rlog = log.child({ correlationId: requestId });
    const r = reply(res, (err) => rlog.error({ err }, 'http handler failed'), { requestId, log: rlog });
    const body = readBody(res, req.getHeader('content-length'), deps.maxBody);
    body.catch(() => {}); // observed below; a 413 may be known before auth finishes
    void (async () => {
      try {
        const principal = await authenticateHttp(verifier, audit, token);
        const buf = await body;
        if (!/^application\/json\b/i.test(contentType)) throw new HubError('invalid', 'content-type must be application/json');
        let json: unknown;
        try {
          json = JSON.parse(buf.toString('utf8'));
        } catch {
          throw new HubError('bad_frame', 'body is not valid JSON');
        }
        const ctx: ClientContext = { principal, grants: compileGrants(principal, roleGrants), session: requestId, correlationId: requestId };
        const out = await handler(ctx, json);
        r.json(out.status, out.body);
      } catch (err) {
        r.error(err);
      }
    })();
  };

  app.post(
    '/v1/publish',
    route(async (ctx, body) => {
      if (!validateOne(body)) throw invalid(validateOne);
      const { topic, data } = body as { topic: string; data: unknown };
      const { payload, contentType } = payloadOf(data);
      const checked = publisher.check(ctx, topic, 'http');
      await admit(ctx, 'pub', [payload.length]);
      await publisher.send(ctx, checked, payload, contentType);
      return { status: 200, body: { ok: true } };
    }),
  );

  // All-or-nothing: every topic is checked before anything is published, so a 4xx publishes nothing.
  app.post(
    '/v1/publish/batch',
    route(async (ctx, body) => {
      if (!validateBatch(body)) throw invalid(validateBatch);
      const items = body as { topic: string; data: unknown }[];
      // Every topic is checked and every payload encoded before anything is sent: a refused item
      // (named by its index) must not cut the batch in half.
      const ready = items.map((m, i) => {
        try {
          return { topic: publisher.check(ctx, m.topic, 'http'), ...payloadOf(m.data) };
        } catch (err) {
          throw err instanceof HubError ? new HubError(err.code, `[${i}] ${err.message}`) : err;
        }
      });
      await admit(ctx, 'pub', ready.map((m) => m.payload.length));
      if (!publisher.available) throw new HubError('unavailable', 'message bus unavailable; nothing was published');
      // History topics are appended before they are published; their promises settle in order.
      const pending: Promise<void>[] = [];
      for (const m of ready) {
        const p = publisher.send(ctx, m.topic, m.payload, m.contentType);
        if (p) pending.push(p);
      }
      await Promise.all(pending);
      return { status: 200, body: { ok: true, published: items.length } };
    }),
  );

  app.post(
    '/v1/commands',
    route(async (ctx, body) => {
      if (!deps.commands) throw new HubError('unavailable', 'commands are not enabled on this hub');
      if (!validateCommand(body)) throw invalid(validateCommand);
      await admit(ctx, 'cmd', []);
      const result = await deps.commands.execute(ctx, body as { type: string; topic: string; data: unknown; key?: string }, 'http');
      return { status: 200, body: { ok: true, ...result } };
    }),
  );
}
