import mqttPacket, { type IConnectPacket, type Packet } from 'mqtt-packet';
import { randomUUID } from 'node:crypto';
import type { Grants } from '../acl/grants.ts';
import type { Principal } from '../auth/principal.ts';
import type { LiveSession } from '../core/sessions.ts';
import { NO_LIMITS, type RateLimits } from '../limits/connLimits.ts';
import type { Slot } from '../limits/limitService.ts';
import type { BridgeContext, SweptSession } from './bridgeContext.ts';
import { CONNECT_REFUSALS, ConnackV4, Reason, type ConnectRefusal } from './codes.ts';
import { clip, overPacketLimit, TokenBucket } from './limits.ts';
import type { Version } from './outbound.ts';
import { Outbox, type MqttSocket } from './outbox.ts';
import { SerialQueue } from './serial.ts';
import { sessionExpiryMs } from './sessionCodec.ts';
import { authorizeConnect, connackProperties, msUntil, publishWill, type Will } from './sessionConnect.ts';
import type { SessionPort } from './sessionPort.ts';
import { handlePublish, handlePubrel } from './sessionPublish.ts';
import { parkSession, persistedSubs, queuedDeliveries, restoreSubscriptions, resumeSession } from './sessionResume.ts';
import { liveOwner, type Claimed, type SessionRef } from './sessionStore.ts';
import { handleSubscribe, handleUnsubscribe } from './sessionSubscribe.ts';
import { clientKey, type Registrant } from './takeoverRegistry.ts';

export type { MqttSocket } from './outbox.ts';

export type SessionState = 'connecting' | 'authenticating' | 'open' | 'closed';

type AuditType = Parameters<BridgeContext['audit']['record']>[1];

/** Packets queued behind a pending Redis or event-store call before the client is dropped. */
const MAX_PENDING = 10_000;
/** Packets accepted between CONNECT and CONNACK (token verification, session resume). */
const MAX_EARLY = 1000;
/** Bytes of packets accepted between CONNECT and CONNACK: a client cannot park megabytes pre-auth. */
const MAX_EARLY_BYTES = 1024 * 1024;
/**
 * Bytes of PUBLISH packets queued behind a pending Redis or event-store call: past it the socket
 * stops being read until the queue is under half (so a fast sender is held back by TCP, not
 * buffered); past 4 times it (a transport that cannot pause) the client is dropped.
 */
const MAX_QUEUED_BYTES = 4 * 1024 * 1024;

/**
 * One MQTT connection (3.1.1 or 5): parses packets with mqtt-packet, authorises CONNECT
 * (sessionConnect.ts), resumes or parks a persistent session (sessionResume.ts), and hands the
 * other packets to handlers that see it only through `SessionPort`. Packets after CONNECT are
 * handled strictly in arrival order (acks too), even when one of them waits for Redis or the
 * event store. Its state is private: handlers change it only through the port.
 */
export class MqttSession implements SessionPort, SweptSession, Registrant {
  principal!: Principal;
  grants!: Grants;
  readonly session = randomUUID();
  version: Version = 4;
  maxOut = Infinity;
  keepaliveMs = 0;
  lastSeen = Date.now();
  readonly openedAt = Date.now();
  state: SessionState = 'connecting';
  readonly subs = new Map<string, 0 | 1>();
  readonly qos2 = new Set<number>();
  /** The tier's rate limits and quotas (hub/limits), set at CONNECT. */
  lim: RateLimits = NO_LIMITS;

  private clientId = '';
  /** Packets received while CONNECT is being authorised. */
  private early: Packet[] = [];
  private earlyBytes = 0;
  private queuedBytes = 0;
  private paused = false;
  private readonly outbox: Outbox;
  private will: Will | undefined;
  /** The client said DISCONNECT (without reason 0x04): no Will. */
  private graceful = false;
  /** No Will whatever happens (refused CONNECT, token expiry, revocation). */
  private suppressWill = false;
  /** Why the connection ends (logs and the `session.disconnected` audit event). */
  private closeReason = 'client closed';
  private expTimer: NodeJS.Timeout | undefined;
  private ref: SessionRef | undefined;
  /** Owner token while this connection holds a persistent session ('' for a clean one). */
  private owner = '';
  private expiryMs = 0;
  /** This connection in the node's session registry (hub/core/sessions.ts), once open. */
  private live: LiveSession | undefined;
  /** Connection slots (IP, org, user) given back at teardown; a parked session holds none. */
  private slots: Slot[] = [];
  /** Detachers of `$commands/<device>` subscriptions (fleet delivery from the event store, not the bus). */
  private fleet: Map<string, () => void> | undefined;

  private readonly parser = mqttPacket.parser({ protocolVersion: 4 });
  private readonly bucket: TokenBucket;
  private readonly order: SerialQueue;

  constructor(
    readonly ctx: BridgeContext,
    readonly sock: MqttSocket,
  ) {
    this.bucket = new TokenBucket(ctx.limits.rate);
    this.outbox = new Outbox(this, sock, ctx.flusher, ctx.limits);
    this.order = new SerialQueue(MAX_PENDING, {
      onError: (err) => this.fail(err),
      onOverflow: () => this.disconnect(Reason.quotaExceeded, 'too many pending packets'),
      stopped: () => this.state === 'closed',
    });
    this.parser.on('packet', (p) => this.onPacket(p));
    this.parser.on('error', (err: Error) => this.violation(Reason.malformedPacket, `malformed packet: ${err.message}`));
    ctx.sessions.add(this);
  }

  get open(): boolean {
    return this.state === 'open';
  }

  get backlogged(): boolean {
    return this.sock.buffered() > this.ctx.limits.maxBackpressure / 4 || this.outbox.inflight.queued > 0;
  }

  flush(): void {
    this.outbox.flush();
  }

  /** Feeds raw bytes from the socket. Never throws. */
  feed(chunk: Buffer): void {
    if (this.state === 'closed') return;
    this.lastSeen = Date.now();
    try {
      this.parser.parse(chunk);
    } catch (err) {
      this.violation(Reason.malformedPacket, `malformed packet: ${(err as Error).message}`);
      return;
    }
    // A declared length beyond the limit is refused before its body is buffered.
    const p = this.parser as unknown as { packet: { length: number }; _list: { length: number } };
    if ((this.state as SessionState) !== 'closed' && overPacketLimit(p.packet.length, p._list.length, this.ctx.limits.maxPacket)) {
      this.audit('limit.hit', { limit: 'packet_size', max: this.ctx.limits.maxPacket });
      this.disconnect(Reason.packetTooLarge, 'packet too large');
    }
  }

  /** The socket went away (or was closed by us). Publishes the will unless the client said goodbye. */
  onSocketClosed(): void {
    this.teardown(this.closeReason === 'client closed' && !this.graceful ? 'connection lost' : this.closeReason);
  }

  // ---- outbound (outbox.ts) -------------------------------------------------------------------

  push(b: Buffer): void {
    this.outbox.push(b);
  }

  send(p: Packet): void {
    this.outbox.send(p);
  }

  sendShared(bytes: Buffer): void {
    this.outbox.sendShared(bytes);
  }

  sendQos1(template: Buffer, offset: number): void {
    this.outbox.sendQos1(template, offset);
  }

  slowConsumer(): void {
    this.audit('limit.hit', { limit: 'backpressure', max: this.ctx.limits.maxBackpressure });
    this.disconnect(Reason.quotaExceeded, 'slow consumer');
  }

  inflightFull(): void {
    this.audit('limit.hit', { limit: 'inflight_queue', max: this.ctx.limits.maxQueued });
    this.disconnect(Reason.quotaExceeded, 'too many unacknowledged QoS 1 messages');
  }

  // ---- inbound ------------------------------------------------------------------------------

  private onPacket(p: Packet): void {
    if (this.state !== 'closed' && (p.length ?? 0) > this.ctx.limits.maxPacket) {
      this.audit('limit.hit', { limit: 'packet_size', max: this.ctx.limits.maxPacket });
      return this.disconnect(Reason.packetTooLarge, 'packet too large');
    }
    switch (this.state) {
      case 'closed':
        return;
      case 'connecting':
        if (p.cmd !== 'connect') return this.violation(Reason.protocolError, `first packet must be CONNECT, got ${p.cmd}`);
        this.state = 'authenticating';
        this.connect(p).catch((err) => this.fail(err));
        return;
      case 'authenticating':
        this.earlyBytes += p.length ?? 0;
        if (this.early.length > MAX_EARLY || this.earlyBytes > MAX_EARLY_BYTES) return this.violation(Reason.quotaExceeded, 'too many packets before CONNACK');
        this.early.push(p);
        return;
      case 'open':
        return this.dispatch(p);
    }
  }

  /** Handles one packet of an open session (also replays `early` after CONNACK). */
  private dispatch(p: Packet): void {
    switch (p.cmd) {
      case 'publish':
        if (!this.bucket.take()) {
          this.audit('limit.hit', { limit: 'rate', max: this.ctx.limits.rate });
          return this.disconnect(Reason.messageRateTooHigh, 'message rate too high');
        }
        if (this.order.idle) {
          // Hot path: nothing pending, handle in place without a closure.
          try {
            const r = handlePublish(this, p);
            if (r instanceof Promise) this.order.track(r);
          } catch (err) {
            this.fail(err);
          }
          return;
        }
        return this.queuePublish(p);
      case 'puback':
        return this.outbox.ack(p.messageId ?? 0);
      case 'pubrel':
        return this.order.run(() => handlePubrel(this, p));
      case 'subscribe':
        return this.order.run(() => handleSubscribe(this, p));
      case 'unsubscribe':
        return this.order.run(() => handleUnsubscribe(this, p));
      case 'pingreq':
        return this.send({ cmd: 'pingresp' });
      case 'disconnect':
        // MQTT 5 reason 0x04 asks for the will to be published all the same.
        this.graceful = !(this.version === 5 && p.reasonCode === Reason.disconnectWithWill);
        this.closeReason = 'client disconnected';
        // MQTT 5 §3.14.2.2.2: DISCONNECT may change the expiry of a persistent session (0 ends it).
        if (this.owner && p.properties?.sessionExpiryInterval !== undefined) this.expiryMs = Math.min(p.properties.sessionExpiryInterval, this.ctx.policy.maxExpiryS) * 1000;
        return this.order.run(() => this.close());
      case 'pubrec':
      case 'pubcomp':
        // The bridge never sends QoS 2, so these answer nothing.
        return;
      case 'auth':
        return this.disconnect(Reason.badAuthenticationMethod, 'enhanced authentication is not supported; reconnect with a fresh token');
      default:
        return this.violation(Reason.protocolError, `unexpected ${p.cmd} packet`);
    }
  }

  /** A PUBLISH behind a pending one: counted by bytes; the socket pauses while the queue is busy. */
  private queuePublish(p: Packet & { cmd: 'publish' }): void {
    const len = p.length ?? 0;
    this.queuedBytes += len;
    this.ctx.stats.inboundQueuedBytes += len;
    if (this.queuedBytes > MAX_QUEUED_BYTES && !this.paused && this.sock.pause) {
      this.paused = true;
      this.ctx.stats.pauses++;
      this.sock.pause();
    }
    if (this.queuedBytes > MAX_QUEUED_BYTES * 4) return this.disconnect(Reason.quotaExceeded, 'too many bytes queued');
    this.order.run(() => {
      this.queuedBytes -= len;
      this.ctx.stats.inboundQueuedBytes -= len;
      if (this.paused && this.queuedBytes <= MAX_QUEUED_BYTES / 2) {
        this.paused = false;
        this.sock.resume?.();
      }
      return handlePublish(this, p);
    });
  }

  private fail(err: unknown): void {
    this.ctx.log.error({ err, session: this.session }, 'mqtt packet handling failed');
    this.disconnect(Reason.unspecified, 'internal error');
  }

  // ---- connect ------------------------------------------------------------------------------

  /**
   * CONNECT: authorise (sessionConnect.ts), register the client id (takeover), resume or create a
   * persistent session, answer CONNACK, deliver the session's queue, then what arrived meanwhile.
   */
  private async connect(p: IConnectPacket): Promise<void> {
    const v = p.protocolVersion === 5 ? 5 : 4;
    const props = p.properties;
    this.version = v;
    this.clientId = p.clientId ?? '';
    this.keepaliveMs = (p.keepalive ?? 0) * 1000;
    if (v === 5) {
      this.outbox.inflight.limitTo(props?.receiveMaximum);
      if (props?.maximumPacketSize) this.maxOut = props.maximumPacketSize;
    }
    const d = await authorizeConnect(this.ctx, p, this.session, this.sock);
    if (this.state === 'closed') {
      if (d.ok) this.ctx.quotas.release(d.slots);
      return;
    }
    if (!d.ok) return this.refuse(d.why, d.auditReason);
    // From here the slots are the session's: release() gives them back, whatever happens next.
    this.slots = d.slots;
    this.lim = d.lim;
    this.principal = d.principal;
    this.grants = d.grants;
    this.will = d.will;
    let assigned: string | undefined;
    if (this.clientId === '') this.clientId = assigned = `orghub-${this.session}`;
    const ref: SessionRef = { org: d.principal.org, key: clientKey(d.principal.org, d.principal.sub, this.clientId) };
    this.ref = ref;
    this.ctx.takeover.register(ref.key, this);
    const { policy } = this.ctx;
    const expiryMs = sessionExpiryMs(v, !!p.clean, props?.sessionExpiryInterval, policy.defaultExpiryS, policy.maxExpiryS);
    let claimed: Claimed | undefined;
    if (expiryMs > 0) {
      this.outbox.hold();
      const owner = liveOwner(this.ctx.nodeId, this.session);
      let r: Claimed | 'full';
      try {
        r = await resumeSession(this.ctx, ref, owner, { clean: !!p.clean, clientId: clip(this.clientId) ?? '', expiryMs, maxSessions: policy.maxSessions }, (s) => (this.state === 'closed' ? Promise.resolve() : restoreSubscriptions(this, s, false)));
      } catch (err) {
        this.ctx.log.warn({ err: (err as Error).message, session: this.session }, 'mqtt session store unavailable at CONNECT');
        return this.refuse('session_store_unavailable');
      }
      if (r === 'full') {
        this.audit('limit.hit', { limit: 'mqtt_sessions', max: policy.maxSessions, transport: 'mqtt' });
        return this.refuse('session_quota');
      }
      if ((this.state as SessionState) === 'closed') {
        // Gone while resuming: hand the claimed session straight back, nothing lost.
        void this.ctx.store.park(ref, owner, '', { subs: r.session.subs, qos2: r.session.qos2, pending: r.messages, expiryMs, maxQueue: policy.maxQueue }).catch(() => {});
        return;
      }
      this.owner = owner;
      this.expiryMs = expiryMs;
      await restoreSubscriptions(this, r.session, true);
      for (const id of r.session.qos2) this.qos2.add(id);
      claimed = r;
    } else {
      // A clean connection ends any stored session of this client id (MQTT 3.1.1 §3.1.2.4).
      this.ctx.store.discard(ref).catch((err) => this.ctx.log.warn({ err: (err as Error).message, session: this.session }, 'stored mqtt session not discarded'));
    }
    if ((this.state as SessionState) === 'closed') return;
    this.state = 'open';
    const presence = this.ctx.presence;
    if (presence) {
      presence.connected(d.principal.org, { session: this.session, sub: d.principal.sub, clientId: this.clientId, transport: 'mqtt' });
      // Filters restored from a persistent session are subscriptions too.
      for (const pattern of this.subs.keys()) presence.subscribed(this.session, pattern);
    }
    this.expTimer = setTimeout(() => {
      // The identity behind the will has lapsed, so the will is not published.
      this.suppressWill = true;
      this.disconnect(Reason.maximumConnectTime, 'token expired');
    }, msUntil(d.principal.exp));
    const present = claimed?.present ?? false;
    if (v === 5) {
      this.send({ cmd: 'connack', sessionPresent: present, reasonCode: Reason.success, properties: connackProperties(this.ctx.limits, props?.sessionExpiryInterval, expiryMs / 1000, assigned) });
    } else {
      this.send({ cmd: 'connack', sessionPresent: present, returnCode: ConnackV4.accepted });
    }
    this.audit('session.connected', {
      transport: 'mqtt',
      via: this.sock.transport,
      protocolVersion: p.protocolVersion,
      clientId: clip(this.clientId),
      username: clip(p.username),
      roles: d.principal.roles,
      jti: d.principal.jti,
      sessionExpiry: expiryMs / 1000,
      sessionPresent: present,
    });
    // Registered before the queue is delivered: a revocation that arrived during CONNECT ends the
    // session right here (the registry tells its listeners on add), and the queue is not handed over.
    this.live = {
      session: this.session,
      transport: 'mqtt',
      principal: d.principal,
      end: (_why, reason) => this.revoke(reason),
    };
    this.ctx.live?.add(this.live);
    if ((this.state as SessionState) !== 'open') return;
    if (claimed) for (const q of queuedDeliveries(this.ctx, claimed.messages, this.subs, v, this.maxOut)) this.sendQos1(q.template, q.offset);
    this.outbox.release();
    const early = this.early;
    this.early = [];
    this.earlyBytes = 0;
    for (const q of early) {
      if (this.state !== 'open') break;
      this.dispatch(q);
    }
  }

  subscriptionsChanged(): void {
    if (!this.owner || !this.ref) return;
    this.ctx.store.setSubscriptions(this.ref, this.owner, persistedSubs(this.subs)).catch((err) => {
      this.ctx.log.warn({ err: (err as Error).message, session: this.session }, 'mqtt subscriptions not stored');
    });
  }

  holdFleet(pattern: string, detach: () => void): void {
    if (this.state !== 'open' || !this.subs.has(pattern)) return detach();
    (this.fleet ??= new Map()).set(pattern, detach);
  }

  dropFleet(pattern: string): boolean {
    const detach = this.fleet?.get(pattern);
    if (!detach) return false;
    this.fleet!.delete(pattern);
    detach();
    return true;
  }

  /**
   * Revoked or suspended (hub/access): MQTT 5 hears DISCONNECT 0x98, 3.1.1 a plain close. The
   * identity behind the Will is void, so no Will (as on token expiry). A persistent session is
   * ended, not parked: its queue is discarded and never handed to a later connection.
   */
  private revoke(reason: string): void {
    this.suppressWill = true;
    this.expiryMs = 0;
    this.disconnect(Reason.administrativeAction, reason);
  }

  /** Another connection registered the same (org, sub, client id). */
  takenOver(): void {
    this.disconnect(Reason.sessionTakenOver, 'session taken over');
  }

  /** Refuses CONNECT: CONNACK with the code of `why` (docs/mqtt.md), then the ordinary close, never a Will. */
  refuse(why: ConnectRefusal, auditReason: string = why): void {
    if (this.state === 'closed') return;
    const code = CONNECT_REFUSALS[why];
    this.audit('session.rejected', { reason: auditReason, transport: 'mqtt', via: this.sock.transport, clientId: clip(this.clientId) }, true);
    this.send(this.version === 5 ? { cmd: 'connack', sessionPresent: false, reasonCode: code.v5 } : { cmd: 'connack', sessionPresent: false, returnCode: code.v4 });
    this.suppressWill = true;
    this.closeReason = auditReason;
    this.close();
  }

  dropForRetry(reason: string): void {
    this.closeReason = reason;
    this.close();
  }

  // ---- closing ------------------------------------------------------------------------------

  /** Closes after a protocol fault: MQTT 5 hears the reason; the will is published (ungraceful). */
  private violation(code: number, reason: string): void {
    if (this.state === 'closed') return;
    if (this.state === 'open') this.audit('session.protocol_violation', { reason: clip(reason, 200), transport: 'mqtt' });
    this.disconnect(code, reason);
  }

  /** Server-side close: an MQTT 5 client gets DISCONNECT with `code` first (only once connected). */
  disconnect(code: number, reason: string): void {
    if (this.state === 'closed') return;
    this.closeReason = reason;
    if (this.version === 5 && this.state === 'open') {
      this.send({ cmd: 'disconnect', reasonCode: code, properties: { reasonString: reason.slice(0, 100) } });
    }
    this.close();
  }

  /** Ends the socket after pending bytes are written, and releases everything. */
  close(): void {
    if (this.state === 'closed') return;
    this.outbox.endSoon();
    this.teardown(this.closeReason);
  }

  private teardown(reason: string): void {
    const wasOpen = this.state === 'open';
    this.state = 'closed';
    // Packets still queued are never handled now: they leave the node-wide gauge.
    this.ctx.stats.inboundQueuedBytes -= this.queuedBytes;
    this.queuedBytes = 0;
    if (wasOpen && this.owner && this.ref && this.expiryMs === 0) {
      this.ctx.store.discard(this.ref).catch((err) => this.ctx.log.warn({ err: (err as Error).message, session: this.session }, 'stored mqtt session not discarded'));
    } else if (wasOpen && this.owner && this.ref) {
      // This connection leaves the registry first, so that the offline queue sees only a newer one.
      this.ctx.takeover.release(this.ref.key, this);
      // Parked before leaving the fan-out: its offline queue takes the subscriptions over first.
      parkSession(this.ctx, { ref: this.ref, session: this.session, owner: this.owner, version: this.version, subs: new Map(Object.entries(persistedSubs(this.subs))), qos2: this.qos2, pending: this.outbox.inflight.pending(), expiryMs: this.expiryMs });
    }
    this.release();
    if (!wasOpen) return;
    if (this.will && !this.graceful && !this.suppressWill) publishWill(this.ctx, this, this.will);
    this.audit('session.disconnected', { transport: 'mqtt', reason, durationMs: Date.now() - this.openedAt });
  }

  /** Drops timers, subscriptions, queued deliveries and the client-id registration. */
  private release(): void {
    if (this.expTimer) clearTimeout(this.expTimer);
    this.expTimer = undefined;
    if (this.principal) {
      for (const pattern of this.subs.keys()) {
        this.ctx.fanout.remove(this.principal.org, pattern, this);
        this.ctx.quotas.dropPattern(this.principal.org, pattern);
      }
    }
    this.subs.clear();
    for (const detach of this.fleet?.values() ?? []) detach();
    this.fleet = undefined;
    this.ctx.presence?.disconnected(this.session);
    this.ctx.quotas.release(this.slots);
    this.slots = [];
    this.outbox.clear();
    this.ctx.sessions.delete(this);
    if (this.live) this.ctx.live?.remove(this.live);
    this.live = undefined;
    if (this.ref) this.ctx.takeover.release(this.ref.key, this);
  }

  /** Records an audit event in the principal's org (none before authentication, or with `preAuth`). */
  audit(type: AuditType, data: Record<string, unknown>, preAuth = false): void {
    const org = preAuth || !this.principal ? undefined : this.principal.org;
    this.ctx.audit.record(org, type, data, { actor: this.principal?.sub, session: this.session });
  }
}
