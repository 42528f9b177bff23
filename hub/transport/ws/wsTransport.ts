import type { WebSocket } from '@trufflesuite/uws-js-unofficial';
import { compileGrants } from '../../acl/grants.ts';
import { parsePattern } from '../../acl/topic.ts';
import type { Principal } from '../../auth/principal.ts';
import { payloadOf } from '../../core/publisher.ts';
import { AuthError, CloseCode, HubError, RateLimitedError } from '../../errors.ts';
import { decodeFrame, encodeFrame, FrameError, type ClientFrame } from '../../protocol/frames.ts';
import { wsInbound } from './inbound.ts';
import { wsSubscriptions } from './subscriptions.ts';
import { wsUpgrade } from './upgrade.ts';
import type { Conn, Id, WsDeps } from './wsTypes.ts';
import type { InboundStats } from './inbound.ts';

export type { WsDeps, WsLimits } from './wsTypes.ts';

/** The largest frame uWS buffers: frames between ORGHUB_MAX_FRAME_BYTES and this get a 1009. */
export function hardFrameBytes(maxFrameBytes: number): number {
  return Math.min(16 * 1024 * 1024, maxFrameBytes * 4);
}

/**
 * The WebSocket endpoint `/v1/ws`: authenticates the upgrade, then serves the frame protocol
 * of docs/protocol.md. Every frame is answered; only protocol violations close the socket.
 */
export function mountWebSocket(deps: WsDeps): { connections(): number; inbound: InboundStats; stop(waitMs?: number): Promise<void> } {
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

  const { subscribe, unsubscribe } = wsSubscriptions(deps, { send, ok });

  /** Decodes and handles one frame, inline or in its turn (inbound.ts). */
  const run = (ws: WebSocket<Conn>, c: Conn, message: ArrayBuffer, isBinary: boolean) => {
    if (c.closed) return;
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
  };
  const abuse = (ws: WebSocket<Conn>, c: Conn) => {
    c.lim.hit('abuse');
    audit.record(c.principal.org, 'limit.hit', { limit: 'abuse', transport: 'ws' }, { actor: c.principal.sub, session: c.session });
    close(ws, CloseCode.rateLimited, 'rate limit abuse');
    return true;
  };
  const inbound = wsInbound({
    budgetMs: limits.turnBudgetMs ?? 0,
    sliceMs: limits.turnSliceMs ?? 1.5,
    maxQueuedBytes: limits.maxQueuedBytes ?? 1024 * 1024,
    run,
    // A held connection that kept sending past ORGHUB_WS_QUEUE_BYTES is abuse whatever its count.
    overflow: (ws, c) => c.lim.abusive(true) && abuse(ws, c),
    heldFrame: (ws, c) => c.lim.heldFrame() && abuse(ws, c),
  });

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

  /**
   * A soft rate check found a user or org lease refill under way (a Redis round trip): this frame
   * waits for it rather than being refused and held for longer, and the connection's next frames
   * wait unparsed behind it (held, not piled onto the same promise to run all at once). Then the
   * check is made again, for real. The check that finds no refill stays synchronous.
   */
  const afterRefill = async (ws: WebSocket<Conn>, c: Conn, kind: 'pub' | 'cmd'): Promise<number> => {
    const settled = c.lim.settle(kind);
    inbound.hold(ws, c, settled);
    await settled;
    return kind === 'pub' ? c.lim.publish() : c.lim.command();
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
        let wait = c.lim.publish(1, true);
        if (wait < 0) wait = await afterRefill(ws, c, 'pub');
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
          // Checked at once, so that a refusal holds the connection before uWS hands over the rest
          // of what it read; only a check that a lease refill under way may answer waits for it.
          let wait = c.lim.command(true);
          if (wait < 0) wait = await afterRefill(ws, c, 'cmd');
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
   * A rate-limit refusal; the hit is audited (aggregated per window). The connection is not read
   * for `wait` ms (it grows while the connection keeps being refused: hub/limits/backoff.ts).
   * Sustained abuse (ORGHUB_LIMITS_ABUSE refusals within 10 s, or ABUSE_STREAK holds in a row)
   * also closes the connection with 4003.
   */
  const limited = (ws: WebSocket<Conn>, c: Conn, wait: number, what: 'publish' | 'command') => {
    if (!c.closed) inbound.hold(ws, c, wait);
    audit.record(c.principal.org, 'limit.hit', { limit: what === 'publish' ? 'rate_publish' : 'rate_command', transport: 'ws' }, { actor: c.principal.sub, session: c.session });
    if (c.lim.abusive()) abuse(ws, c);
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
    // uWS (20.30) force-closes the TCP connection above maxPayloadLength, with no close frame (a
    // 1006 for the client) and no hook to answer otherwise. So uWS takes frames up to
    // hardFrameBytes (4x ORGHUB_MAX_FRAME_BYTES, at most 16 MiB) and the hub answers a frame
    // between the two with the close frame 1009; only a frame above that is cut as uWS does.
    maxPayloadLength: hardFrameBytes(limits.maxFrameBytes),
    // Idle and slow-consumer closes are the sweep's (above), with close frames 4002 and 4001.
    idleTimeout: 0,
    sendPingsAutomatically: false,
    maxBackpressure: limits.maxBackpressure,
    closeOnBackpressureLimit: 0,

    upgrade: wsUpgrade(deps, connLog, debugOn),

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
      if (message.byteLength > limits.maxFrameBytes) {
        audit.record(c.principal.org, 'session.protocol_violation', { reason: `frame of ${message.byteLength} bytes above ${limits.maxFrameBytes}` }, { actor: c.principal.sub, session: c.session });
        return close(ws, CloseCode.messageTooBig, 'message too big');
      }
      inbound.receive(ws, c, message, isBinary);
    },

    close: (ws, code) => {
      sockets.delete(ws);
      const c = ws.getUserData();
      c.closed = true;
      inbound.closed(c);
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
    inbound: inbound.stats,
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
