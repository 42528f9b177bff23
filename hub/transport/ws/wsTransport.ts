import type { TemplatedApp, WebSocket, HttpResponse, HttpRequest, us_socket_context_t } from '@trufflesuite/uws-js-unofficial';
import { randomUUID } from 'node:crypto';
import { compileGrants, type RoleGrants } from '../../acl/grants.ts';
import { parsePattern } from '../../acl/topic.ts';
import type { AuditSink } from '../../audit/audit.ts';
import { extractToken } from '../../auth/joseVerifier.ts';
import type { Principal, TokenVerifier } from '../../auth/principal.ts';
import type { ClientContext } from '../../core/context.ts';
import { payloadOf, type Publisher } from '../../core/publisher.ts';
import { AuthError, CloseCode, HubError, RateLimitedError } from '../../errors.ts';
import type { RateLimits } from '../../limits/connLimits.ts';
import type { Admission, LimitService, Slot } from '../../limits/limitService.ts';
import type { Logger } from '../../log.ts';
import { decodeFrame, encodeFrame, FrameError, SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, type ClientFrame, type Encoding } from '../../protocol/frames.ts';
import type { CommandHandler } from '../../core/commands.ts';
import { jsonFrame, msgpackFrame, type FanoutGroup, type WsFanout } from './fanout.ts';
import type { LiveSession, SessionRegistry } from '../../core/sessions.ts';
import type { BusMessage } from '../../bus/bus.ts';
import { openHistorySubscription, type HistoryRecorder, type HistorySubscription } from '../../history/subscription.ts';
import type { PresenceTracker } from '../../presence/tracker.ts';
import { deviceOfCommandTopic, isReservedTopic, type FleetDelivery } from '../../fleet/fleet.ts';

export interface WsLimits {
  maxFrameBytes: number;
  maxSubscriptions: number;
  idleTimeoutSeconds: number;
  maxBackpressure: number;
}

export interface WsDeps {
  app: TemplatedApp;
  verifier: TokenVerifier;
  roleGrants: RoleGrants;
  publisher: Publisher;
  fanout: WsFanout;
  audit: AuditSink;
  commands?: CommandHandler;
  /** Delivers fleet commands on `$commands/<device>` subscriptions (absent: such subscriptions are refused). */
  fleet?: FleetDelivery;
  presence?: PresenceTracker;
  /** Topics of namespaces with history: offsets, epochs and resume (`sub` with `since`). */
  history?: HistoryRecorder;
  /** Most messages one resume may recover. */
  maxRecover?: number;
  log: Logger;
  limits: WsLimits;
  rateLimits: LimitService;
  /** The node's registry of live sessions (revocation closes through it). */
  sessions?: SessionRegistry;
}

/** Per-socket state. Kept small: 10k idle connections must stay under ~3 KiB each. */
interface Conn extends ClientContext {
  enc: Encoding;
  /** Subscribed patterns; an array, not a Set: most connections hold one or two. */
  subs: string[];
  /** Token expiry in ms, checked by the sweep (no timer per connection: memory at 10k idle sockets). */
  expMs: number;
  openedAt: number;
  closed: boolean;
  closeReason?: string;
  /** Rate limits and quotas of this connection's tier. */
  lim: RateLimits;
  /** Connection slots (IP, org, user) given back at close. */
  slots: Slot[];
  /** Commands awaiting their durable ack. */
  inflight: number;
  /** The fan-out group of sockets holding the same patterns (fanout.ts). */
  fanoutGroup?: FanoutGroup;
  /**
   * `$commands/<device>` subscriptions (served by the fleet delivery, not the bus) and history-topic
   * subscriptions (delivered in offset order per connection). Neither is in `subs`, the fan-out's
   * pattern set. A null value: still being opened.
   */
  fleet?: Map<string, (() => void) | null>;
  history?: Map<string, HistorySubscription | null>;
  /** This connection in the node's session registry. */
  live?: LiveSession;
  /** Last frame (data, ping or pong) received from the client, for the idle sweep. */
  lastSeen: number;
  /** The hub pinged this silent connection and waits for any frame back. */
  pinged: boolean;
  /** Set when the connection was cut as a slow consumer: no more deliveries, 4001 once drained. */
  cutAt?: number;
}

type Id = number | string | undefined;

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
 * The WebSocket endpoint `/v1/ws`: authenticates the upgrade, then serves the frame protocol
 * of docs/protocol.md. Every frame is answered; only protocol violations close the socket.
 */
export function mountWebSocket(deps: WsDeps): { connections(): number; stop(waitMs?: number): Promise<void> } {
  const { app, verifier, roleGrants, publisher, fanout, audit, log, limits, rateLimits } = deps;
  const sockets = new Set<WebSocket<Conn>>();

  /**
   * Slow-consumer policy. A socket holding more than half of ORGHUB_MAX_BACKPRESSURE unsent is cut:
   * it leaves its subscriptions (nothing more is delivered), and once the client has read what was
   * buffered it gets the close frame 4001. A close frame cannot overtake unread data, and uWS's
   * end() gives the peer only a few seconds, so ending at once would lose the frame (a 1006) for a
   * client that resumes reading later. A cut client that never drains within the idle timeout is
   * dropped without a frame (1006). Between sweeps uWS skips sends above the full bound
   * (closeOnBackpressureLimit off), so memory stays bounded by ORGHUB_MAX_BACKPRESSURE.
   *
   * Idle policy: uWS's own idleTimeout closes without a close frame, so it is off and this sweep
   * does it: a connection silent for half of ORGHUB_IDLE_TIMEOUT is pinged, one silent for the
   * whole of it gets 4002 (the peer that is merely quiet answers the ping; ws clients do).
   */
  const slowThreshold = limits.maxBackpressure / 2;
  const idleMs = limits.idleTimeoutSeconds * 1000;
  let cutCount = 0;
  let draining = false;
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const ws of sockets) {
      const c = ws.getUserData();
      if (c.cutAt !== undefined) {
        if (ws.getBufferedAmount() === 0) close(ws, CloseCode.slowConsumer, 'slow consumer');
        else if (idleMs > 0 && now - c.cutAt > idleMs) {
          c.closeReason = 'slow consumer that never read its buffer';
          ws.close();
        }
        continue;
      }
      if (c.expMs <= now) {
        close(ws, CloseCode.tokenExpired, 'token expired');
        continue;
      }
      if (ws.getBufferedAmount() > slowThreshold) {
        audit.record(c.principal.org, 'limit.hit', { limit: 'backpressure', max: limits.maxBackpressure, transport: 'ws' }, { actor: c.principal.sub, session: c.session });
        c.cutAt = now;
        cutCount++;
        for (const pattern of [...c.subs]) unsubscribe(ws, c, pattern);
        continue;
      }
      if (idleMs <= 0) continue;
      const silent = now - c.lastSeen;
      if (silent >= idleMs) close(ws, CloseCode.idleTimeout, 'idle');
      else if (silent >= idleMs / 2 && !c.pinged) {
        c.pinged = true;
        ws.ping();
      }
    }
  }, 250);
  sweep.unref();
  const seen = (ws: WebSocket<Conn>) => {
    const c = ws.getUserData();
    c.lastSeen = Date.now();
    c.pinged = false;
  };

  /**
   * The connection's logger: its correlation id is its session id, which is also the `session` and
   * `correlationId` of the events it causes. Made per log line, not kept per connection (memory at
   * 10k idle sockets); debug lines are built only when debug is on.
   */
  const connLog = (session: string) => log.child({ correlationId: session });
  const debugOn = log.isLevelEnabled('debug');

  const send = (ws: WebSocket<Conn>, frame: object) => {
    const c = ws.getUserData();
    if (c.closed) return;
    const out = encodeFrame(frame, c.enc);
    ws.send(out, typeof out !== 'string');
  };
  const ok = (ws: WebSocket<Conn>, id: Id, extra?: object) => {
    if (id !== undefined) send(ws, extra ? { op: 'ok', id, ...extra } : { op: 'ok', id });
  };
  const fail = (ws: WebSocket<Conn>, id: Id, code: string, message: string, extra?: object) => {
    send(ws, id === undefined ? { op: 'err', code, message, ...extra } : { op: 'err', id, code, message, ...extra });
  };
  const close = (ws: WebSocket<Conn>, code: number, reason: string) => {
    const c = ws.getUserData();
    if (c.closed) return;
    c.closeReason = reason;
    ws.end(code, reason);
  };

  const sendMsgs = (ws: WebSocket<Conn>, c: Conn, pattern: string, msgs: BusMessage[]) => {
    if (c.closed || msgs.length === 0) return;
    if (c.enc === 'json') ws.send(jsonFrame(JSON.stringify(pattern), msgs), false);
    else ws.send(msgpackFrame(pattern, msgs), true);
  };

  /**
   * Recovered messages: resumes that shared one history read share the array, so its frame is
   * encoded once per encoding (and as bytes, so uWS does not convert the text for every socket).
   */
  const recoveredFrames = new WeakMap<BusMessage[], { pattern: string; json?: Buffer; msgpack?: Uint8Array }>();
  const sendRecovered = (ws: WebSocket<Conn>, c: Conn, pattern: string, msgs: BusMessage[]) => {
    if (c.closed || msgs.length === 0) return;
    let f = recoveredFrames.get(msgs);
    if (!f || f.pattern !== pattern) recoveredFrames.set(msgs, (f = { pattern }));
    if (c.enc === 'json') ws.send((f.json ??= Buffer.from(jsonFrame(JSON.stringify(pattern), msgs))), false);
    else ws.send((f.msgpack ??= msgpackFrame(pattern, msgs)), true);
  };

  /**
   * A topic with history: recovered messages (for `since`) follow the `ok`, then live ones, in
   * offset order and exactly once (hub/history/subscription.ts).
   */
  const subscribeHistory = async (ws: WebSocket<Conn>, c: Conn, id: Id, pattern: string, since?: { offset: number; epoch: string }) => {
    const held = (c.history ??= new Map());
    held.set(pattern, null);
    let hs: HistorySubscription;
    try {
      hs = await openHistorySubscription({ recorder: deps.history!, bus: deps.fanout.bus, log, org: c.principal.org, topic: pattern, since, maxRecover: deps.maxRecover ?? 10_000 });
    } catch (err) {
      if (held.get(pattern) === null) {
        held.delete(pattern);
        rateLimits.dropPattern(c.principal.org, pattern);
      }
      throw err;
    }
    if (c.closed || held.get(pattern) !== null) return hs.close();
    held.set(pattern, hs);
    deps.presence?.subscribed(c.session, pattern);
    ws.cork(() => {
      const extra: Record<string, unknown> = { offset: hs.position.offset, epoch: hs.position.epoch };
      if (hs.recovered !== undefined) extra.recovered = hs.recovered;
      if (hs.missed !== undefined) extra.missed = hs.missed;
      ok(ws, id, extra);
      sendRecovered(ws, c, pattern, hs.messages);
    });
    hs.start((msgs) => {
      if (!c.closed) ws.cork(() => sendMsgs(ws, c, pattern, msgs));
    });
  };

  const subscribe = async (ws: WebSocket<Conn>, c: Conn, id: Id, pattern: string, since?: { offset: number; epoch: string }) => {
    parsePattern(pattern);
    if (!c.grants.canSubscribe(pattern)) {
      audit.record(c.principal.org, 'subscribe.denied', { pattern, transport: 'ws' }, { actor: c.principal.sub, session: c.session });
      throw new HubError('forbidden', `subscribe to "${pattern}" is not granted`);
    }
    if (c.subs.includes(pattern) || c.fleet?.has(pattern) || c.history?.has(pattern)) return ok(ws, id);
    if (c.subs.length + (c.fleet?.size ?? 0) + (c.history?.size ?? 0) >= limits.maxSubscriptions) {
      audit.record(c.principal.org, 'limit.hit', { limit: 'subscriptions', max: limits.maxSubscriptions, transport: 'ws' }, { actor: c.principal.sub, session: c.session });
      throw new HubError('limit', `at most ${limits.maxSubscriptions} subscriptions per connection`);
    }
    if (isReservedTopic(pattern)) return subscribeCommands(ws, c, id, pattern);
    const withHistory = deps.history?.retention(pattern) !== undefined;
    if (since && !withHistory) throw new HubError('invalid', `"since" needs a topic of a namespace with history (ORGHUB_HISTORY_NAMESPACES); "${pattern}" has none`);
    // A history subscription holds a bus subscription too, so it counts against the org's per-node
    // pattern cap like any other; the hold is dropped by whoever removes the pattern from c.history.
    if (!rateLimits.holdPattern(c.principal.org, pattern)) {
      c.lim.hit('patterns');
      audit.record(c.principal.org, 'limit.hit', { limit: 'patterns', max: rateLimits.limitsOf(c.principal.org).patternsPerNode, transport: 'ws' }, { actor: c.principal.sub, session: c.session });
      throw new HubError('limit', 'the org holds too many distinct subscription patterns on this node');
    }
    if (withHistory) return subscribeHistory(ws, c, id, pattern, since);
    c.subs.push(pattern);
    if (fanout.update(ws, c)) await fanout.confirm();
    deps.presence?.subscribed(c.session, pattern);
    if (!c.closed) ws.cork(() => ok(ws, id));
  };

  /**
   * A device's command topic is served from the event store by the fleet delivery, never from the
   * bus: nothing a client or backend publishes on NATS can reach it.
   */
  const subscribeCommands = async (ws: WebSocket<Conn>, c: Conn, id: Id, pattern: string) => {
    const device = deviceOfCommandTopic(pattern);
    if (!device) throw new HubError('bad_topic', 'command topics are subscribed one device at a time: "$commands/<device>"');
    if (!deps.fleet) throw new HubError('unavailable', 'fleet commands are not enabled on this hub');
    const fleetMap = (c.fleet ??= new Map());
    fleetMap.set(pattern, null);
    let ready = false;
    const early: object[] = [];
    const detach = await deps.fleet.attach(c.principal.org, device, {
      session: c.session,
      transport: 'ws',
      // Deliveries read at subscribe time follow the ok, so the client sees ok first.
      send: (d) => {
        const frame = { op: 'msg', sub: pattern, topic: pattern, data: d, offset: d.offset, ts: Date.now() };
        if (!ready) early.push(frame);
        else if (!c.closed) ws.cork(() => send(ws, frame));
      },
    });
    if (c.closed || fleetMap.get(pattern) !== null) return detach();
    fleetMap.set(pattern, detach);
    ready = true;
    ws.cork(() => {
      ok(ws, id, { recovered: true });
      for (const f of early) send(ws, f);
    });
  };

  const unsubscribe = (ws: WebSocket<Conn>, c: Conn, pattern: string) => {
    if (c.fleet?.has(pattern)) {
      const detach = c.fleet.get(pattern);
      c.fleet.delete(pattern);
      return detach?.();
    }
    if (c.history?.has(pattern)) {
      const hs = c.history.get(pattern);
      c.history.delete(pattern);
      rateLimits.dropPattern(c.principal.org, pattern);
      hs?.close();
      deps.presence?.unsubscribed(c.session, pattern);
      return;
    }
    const i = c.subs.indexOf(pattern);
    if (i < 0) return;
    c.subs.splice(i, 1);
    fanout.update(ws, c);
    rateLimits.dropPattern(c.principal.org, pattern);
    deps.presence?.unsubscribed(c.session, pattern);
  };

  const refresh = async (ws: WebSocket<Conn>, c: Conn, id: Id, token: string) => {
    let next: Principal;
    try {
      next = await verifier.verify(token);
    } catch (err) {
      if (err instanceof HubError && err.code === 'unavailable') throw err;
      const reason = err instanceof AuthError ? err.reason : 'token_invalid';
      audit.record(c.principal.org, 'session.refresh_rejected', { reason }, { actor: c.principal.sub, session: c.session });
      throw new HubError('unauthorized', reason);
    }
    if (c.closed) return;
    if (next.org !== c.principal.org || next.sub !== c.principal.sub) {
      audit.record(c.principal.org, 'session.refresh_rejected', { reason: 'identity_changed' }, { actor: c.principal.sub, session: c.session });
      throw new HubError('forbidden', 'a refreshed token must carry the same org and sub');
    }
    c.principal = next;
    c.grants = compileGrants(next, roleGrants);
    c.expMs = next.exp * 1000;
    ws.cork(() => {
      for (const pattern of [...c.subs, ...(c.fleet?.keys() ?? []), ...(c.history?.keys() ?? [])]) {
        if (c.grants.canSubscribe(pattern)) continue;
        unsubscribe(ws, c, pattern);
        fail(ws, undefined, 'forbidden', `subscription "${pattern}" dropped: no longer granted`, { topic: pattern });
      }
      audit.record(c.principal.org, 'session.refreshed', { exp: next.exp, jti: next.jti }, { actor: c.principal.sub, session: c.session });
      ok(ws, id);
    });
  };

  const handle = async (ws: WebSocket<Conn>, c: Conn, f: ClientFrame) => {
    switch (f.op) {
      case 'pub': {
        const { payload, contentType } = payloadOf(f.data);
        if (payload.length > c.lim.maxMessageBytes) {
          c.lim.hit('message_size');
          throw new HubError('too_large', `message payload above ${c.lim.maxMessageBytes} bytes (the org's tier)`);
        }
        const topic = publisher.check(c, f.topic, 'ws');
        const wait = c.lim.publish();
        if (wait > 0) throw limited(ws, c, wait, 'publish');
        const pending = publisher.send(c, topic, payload, contentType);
        if (pending) {
          // A history topic: acknowledged once appended (it has its offset) and published.
          await pending;
          if (!c.closed) ws.cork(() => ok(ws, f.id));
          return;
        }
        return ok(ws, f.id);
      }
      case 'sub':
        return subscribe(ws, c, f.id, f.topic, f.since);
      case 'unsub':
        parsePattern(f.topic);
        unsubscribe(ws, c, f.topic);
        return ok(ws, f.id);
      case 'ping':
        return send(ws, f.id === undefined ? { op: 'pong' } : { op: 'pong', id: f.id });
      case 'auth':
        return refresh(ws, c, f.id, f.token);
      case 'cmd': {
        if (!deps.commands) throw new HubError('unavailable', 'commands are not enabled on this hub');
        if (draining) throw new HubError('unavailable', 'the hub is shutting down: retry on another node');
        if (c.inflight >= c.lim.inflightCommands) {
          c.lim.hit('inflight_commands');
          throw new HubError('limit', `at most ${c.lim.inflightCommands} commands in flight per connection`);
        }
        c.inflight++;
        try {
          await c.lim.settle('cmd');
          const wait = c.lim.command();
          if (wait > 0) throw limited(ws, c, wait, 'command');
          const result = await deps.commands.execute(c, { type: f.type, topic: f.topic, data: f.data, key: f.key }, 'ws');
          if (!c.closed) ws.cork(() => ok(ws, f.id, result));
        } finally {
          c.inflight--;
        }
        return;
      }
    }
  };

  /**
   * A rate-limit refusal; the hit is audited (aggregated per window). Sustained abuse
   * (ORGHUB_LIMITS_ABUSE refusals within 10 s) also closes the connection with 4003.
   */
  const limited = (ws: WebSocket<Conn>, c: Conn, wait: number, what: 'publish' | 'command') => {
    audit.record(c.principal.org, 'limit.hit', { limit: what === 'publish' ? 'rate_publish' : 'rate_command', transport: 'ws' }, { actor: c.principal.sub, session: c.session });
    if (c.lim.abusive()) {
      c.lim.hit('abuse');
      audit.record(c.principal.org, 'limit.hit', { limit: 'abuse', transport: 'ws' }, { actor: c.principal.sub, session: c.session });
      close(ws, CloseCode.rateLimited, 'rate limit abuse');
    }
    return new RateLimitedError(wait, what);
  };

  const reportError = (ws: WebSocket<Conn>, id: Id, err: unknown) => {
    const c = ws.getUserData();
    if (c.closed) return;
    if (err instanceof HubError) {
      ws.cork(() => fail(ws, id, err.code, err.message, err.retryAfterMs === undefined ? undefined : { retryAfterMs: err.retryAfterMs }));
      return;
    }
    connLog(c.session).error({ err }, 'frame handling failed');
    ws.cork(() => fail(ws, id, 'internal', 'internal error'));
  };

  app.ws<Conn>('/v1/ws', {
    // Above maxPayloadLength uWS (20.30) force-closes the TCP connection: the client sees 1006,
    // never 1009; the JS API has no hook to answer with a close frame instead (docs/protocol.md).
    maxPayloadLength: limits.maxFrameBytes,
    // Idle and slow-consumer closes are the sweep's (above), with close frames 4002 and 4001.
    idleTimeout: 0,
    sendPingsAutomatically: false,
    maxBackpressure: limits.maxBackpressure,
    closeOnBackpressureLimit: 0,

    upgrade: (res: HttpResponse, req: HttpRequest, context: us_socket_context_t) => {
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
    },

    open: (ws) => {
      sockets.add(ws);
      const c = ws.getUserData();
      deps.presence?.connected(c.principal.org, { session: c.session, sub: c.principal.sub, transport: 'ws' });
      if (debugOn) connLog(c.session).debug({ org: c.principal.org, sub: c.principal.sub, enc: c.enc }, 'ws connected');
      audit.record(c.principal.org, 'session.connected', { transport: 'ws', encoding: c.enc, roles: c.principal.roles, jti: c.principal.jti }, { actor: c.principal.sub, session: c.session });
      // Registered last: a revocation that arrived during the upgrade ends the session right here.
      if (deps.sessions) {
        c.live = { session: c.session, transport: 'ws', get principal() { return c.principal; }, end: (why, reason) => close(ws, why === 'suspended' ? CloseCode.orgSuspended : CloseCode.tokenRevoked, reason) };
        deps.sessions.add(c.live);
      }
    },

    ping: (ws) => seen(ws),
    pong: (ws) => seen(ws),

    message: (ws, message, isBinary) => {
      seen(ws);
      const c = ws.getUserData();
      let frame: ClientFrame;
      try {
        frame = decodeFrame(message, isBinary, c.enc);
      } catch (err) {
        const fe = err as FrameError;
        if (fe.code === 'bad_frame' && isBinary !== (c.enc === 'msgpack')) {
          audit.record(c.principal.org, 'session.protocol_violation', { reason: fe.message }, { actor: c.principal.sub, session: c.session });
          return close(ws, CloseCode.protocolViolation, fe.message);
        }
        reportError(ws, fe.requestId, fe);
        return;
      }
      // `handle` is async: every failure, synchronous or not, arrives as a rejection.
      handle(ws, c, frame).catch((err) => reportError(ws, frame.id, err));
    },

    close: (ws, code) => {
      sockets.delete(ws);
      const c = ws.getUserData();
      c.closed = true;
      if (debugOn) connLog(c.session).debug({ code, reason: c.closeReason }, 'ws closed');
      if (c.cutAt !== undefined) cutCount--;
      fanout.remove(c);
      for (const pattern of c.subs) rateLimits.dropPattern(c.principal.org, pattern);
      for (const [pattern, hs] of c.history ?? []) {
        hs?.close();
        rateLimits.dropPattern(c.principal.org, pattern);
      }
      c.history?.clear();
      for (const detach of c.fleet?.values() ?? []) detach?.();
      deps.presence?.disconnected(c.session);
      if (c.live) deps.sessions?.remove(c.live);
      c.subs = [];
      rateLimits.release(c.slots);
      c.slots = [];
      audit.record(
        c.principal.org,
        'session.disconnected',
        { transport: 'ws', code, reason: c.closeReason ?? (code === 1006 ? 'connection lost or oversized frame' : 'client closed'), durationMs: Date.now() - c.openedAt },
        { actor: c.principal.sub, session: c.session },
      );
    },
  });

  return {
    /** Connections served: one cut as a slow consumer and waiting to drain no longer counts. */
    connections: () => sockets.size - cutCount,
    /**
     * Drain: commands already in flight get their ack (up to `waitMs`), then every client is told
     * 4000 (reconnect elsewhere). New commands meanwhile are refused `unavailable`, which clients retry.
     */
    async stop(waitMs = 0) {
      draining = true;
      const deadline = Date.now() + waitMs;
      const inflight = () => [...sockets].reduce((n, ws) => n + ws.getUserData().inflight, 0);
      while (inflight() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      clearInterval(sweep);
      for (const ws of [...sockets]) close(ws, CloseCode.shutdown, 'hub shutting down');
    },
  };
}
