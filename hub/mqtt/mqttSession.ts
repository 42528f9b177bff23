import type { IConnectPacket, Packet } from 'mqtt-packet';
import { randomUUID } from 'node:crypto';
import type { Grants } from '../acl/grants.ts';
import type { Principal } from '../auth/principal.ts';
import type { LiveSession, SessionEnd } from '../core/sessions.ts';
import { NO_LIMITS, type RateLimits } from '../limits/connLimits.ts';
import type { Slot } from '../limits/limitService.ts';
import type { Logger } from '../log.ts';
import { sessionLog, type BridgeContext, type SweptSession } from './bridgeContext.ts';
import { Reason, type ConnectRefusal } from './codes.ts';
import { clip, TokenBucket } from './limits.ts';
import type { Version } from './outbound.ts';
import { Outbox, type MqttSocket } from './outbox.ts';
import { SerialQueue } from './serial.ts';
import { isReservedTopic } from '../fleet/fleet.ts';
import { FleetHolds } from './fleetHolds.ts';
import { PacketReader, PublishBacklog } from './inboundGate.ts';
import { sessionExpiryMs } from './sessionCodec.ts';
import { acceptedConnack, acceptedConnackBytes, authorizeConnect, connectedAuditData, msUntil, refusedConnack } from './sessionConnect.ts';
import { PersistentSession } from './sessionPersistence.ts';
import type { SessionPort, SessionState } from './sessionPort.ts';
import { handlePublish, handlePubrel } from './sessionPublish.ts';
import { queuedDeliveries } from './sessionResume.ts';
import type { Claimed } from './sessionStore.ts';
import { attachCommands, handleSubscribe, handleUnsubscribe } from './sessionSubscribe.ts';
import { clientKey, type Registrant } from './takeoverRegistry.ts';
import { LastWill } from './lastWill.ts';

export type { MqttSocket } from './outbox.ts';
export type { SessionState } from './sessionPort.ts';

type AuditType = Parameters<BridgeContext['audit']['record']>[1];

/** Packets queued behind a pending Redis or event-store call before the client is dropped. */
const MAX_PENDING = 10_000;

/**
 * One MQTT connection (3.1.1 or 5): reads packets (inboundGate.ts), authorises CONNECT
 * (sessionConnect.ts), resumes or parks a persistent session (sessionPersistence.ts), decides the
 * fate of its Will (lastWill.ts), and hands the other packets to handlers that see it only
 * through `SessionPort`. Packets after CONNECT are
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
  /** PUBLISH bytes queued behind a pending call (pauses the socket). */
  private readonly backlog: PublishBacklog;
  private readonly outbox: Outbox;
  private readonly will = new LastWill();
  /** Why the connection ends (logs and the `session.disconnected` audit event). */
  private closeReason = 'client closed';
  private expTimer: NodeJS.Timeout | undefined;
  /** The (org, sub, client id) key of the takeover registry, once authorised. */
  private key: string | undefined;
  /** The stored session of a persistent connection (resume at CONNECT, park at close). */
  private persistent: PersistentSession | undefined;
  /** This connection in the node's session registry (hub/core/sessions.ts), once open. */
  private live: LiveSession | undefined;
  /** Connection slots (IP, org, user) given back at teardown; a parked session holds none. */
  private slots: Slot[] = [];
  /** `$commands/<device>` subscriptions' fleet deliveries (from the event store, not the bus). */
  private readonly fleet = new FleetHolds();

  private readonly reader: PacketReader;
  private readonly bucket: TokenBucket;
  private readonly order: SerialQueue;

  constructor(
    readonly ctx: BridgeContext,
    readonly sock: MqttSocket,
  ) {
    this.bucket = new TokenBucket(ctx.limits.rate);
    this.outbox = new Outbox(this, sock, ctx.flusher, ctx.limits);
    this.backlog = new PublishBacklog(sock, ctx.stats);
    // Hooks are bound methods, not arrow functions: under tsx (esbuild `keepNames`) every named
    // arrow costs a `name` defineProperty each time it is created (~0.3 µs), and these are created
    // for every connection.
    this.order = new SerialQueue(MAX_PENDING, {
      onError: this.fail.bind(this),
      onOverflow: this.tooManyPending.bind(this),
      stopped: this.isClosed.bind(this),
    });
    this.reader = new PacketReader(this, {
      onConnect: this.onConnect.bind(this),
      onPacket: this.dispatch.bind(this),
      onAck: this.outbox.ack.bind(this.outbox),
      violation: this.violation.bind(this),
      tooLarge: this.tooLarge.bind(this),
    }, ctx.limits.maxPacket);
    ctx.sessions.add(this);
  }

  private isClosed(): boolean {
    return this.state === 'closed';
  }

  private tooManyPending(): void {
    this.disconnect(Reason.quotaExceeded, 'too many pending packets');
  }

  private onConnect(p: IConnectPacket): void {
    this.state = 'authenticating';
    this.connect(p).catch((err) => this.fail(err));
  }

  private tooLarge(): void {
    this.audit('limit.hit', { limit: 'packet_size', max: this.ctx.limits.maxPacket });
    this.disconnect(Reason.packetTooLarge, 'packet too large');
  }

  /** This connection's logger: every line carries `correlationId` = `session`. */
  get log(): Logger {
    return sessionLog(this.ctx, this.session);
  }

  get open(): boolean {
    return this.state === 'open';
  }

  get closed(): boolean {
    return this.state === 'closed';
  }

  get backlogged(): boolean {
    return this.sock.buffered() > this.ctx.limits.maxBackpressure / 4 || this.outbox.inflight.queued > 0;
  }

  flush(): void {
    this.outbox.flush();
  }

  hold(ms: number): Promise<void> {
    return this.backlog.hold(ms);
  }

  /** Feeds raw bytes from the socket. Never throws. */
  feed(chunk: Buffer): void {
    if (this.state === 'closed') return;
    this.lastSeen = Date.now();
    this.reader.feed(chunk);
  }

  /** The socket went away (or was closed by us). Publishes the will unless the client said goodbye. */
  onSocketClosed(): void {
    this.teardown(this.closeReason === 'client closed' && !this.will.saidGoodbye ? 'connection lost' : this.closeReason);
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
        this.will.disconnected(this.version === 5 && p.reasonCode === Reason.disconnectWithWill);
        this.closeReason = 'client disconnected';
        this.persistent?.disconnectExpiry(p.properties?.sessionExpiryInterval);
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
    if (!this.backlog.add(len)) return this.disconnect(Reason.quotaExceeded, 'too many bytes queued');
    this.order.run(() => {
      this.backlog.taken(len);
      return handlePublish(this, p);
    });
  }

  private fail(err: unknown): void {
    this.log.error({ err }, 'mqtt packet handling failed');
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
    this.will.set(d.will);
    let assigned: string | undefined;
    if (this.clientId === '') this.clientId = assigned = `orghub-${this.session}`;
    const ref = { org: d.principal.org, key: clientKey(d.principal.org, d.principal.sub, this.clientId) };
    this.key = ref.key;
    this.ctx.takeover.register(ref.key, this, !!p.clean);
    const { policy } = this.ctx;
    const expiryMs = sessionExpiryMs(v, !!p.clean, props?.sessionExpiryInterval, policy.defaultExpiryS, policy.maxExpiryS);
    let claimed: Claimed | undefined;
    if (expiryMs > 0) {
      this.outbox.hold();
      this.persistent = new PersistentSession(this.ctx, ref, this.session, expiryMs);
      const r = await this.persistent.resume(this, !!p.clean, this.clientId);
      // Closed while it resumed: the subscriptions the close kept (`PersistentSession.resuming`) go now.
      if ((this.state as SessionState) === 'closed') this.leaveFanout();
      if (r === 'gone') return;
      if (r === 'unavailable') return this.refuse('session_store_unavailable');
      if (r === 'full') {
        this.audit('limit.hit', { limit: 'mqtt_sessions', max: policy.maxSessions, transport: 'mqtt' });
        return this.refuse('session_quota');
      }
      claimed = r;
    } else {
      // A clean connection ends any stored session of this client id (MQTT 3.1.1 §3.1.2.4).
      this.ctx.store.discard(ref).catch((err) => this.log.warn({ err: (err as Error).message }, 'stored mqtt session not discarded'));
    }
    if ((this.state as SessionState) === 'closed') return;
    this.state = 'open';
    if (this.ctx.log.isLevelEnabled('debug')) this.log.debug({ org: d.principal.org, sub: d.principal.sub, version: v, via: this.sock.transport, persistent: expiryMs > 0 }, 'mqtt connected');
    const presence = this.ctx.presence;
    if (presence) {
      presence.connected(d.principal.org, { session: this.session, sub: d.principal.sub, clientId: this.clientId, transport: 'mqtt' });
      // Filters restored from a persistent session are subscriptions too (fleet command topics are not the bus's).
      for (const pattern of this.subs.keys()) if (!isReservedTopic(pattern)) presence.subscribed(this.session, pattern);
    }
    this.expTimer = setTimeout(() => {
      // The identity behind the will has lapsed, so the will is not published.
      this.will.suppress();
      this.disconnect(Reason.maximumConnectTime, 'token expired');
    }, msUntil(d.principal.exp));
    const present = claimed?.present ?? false;
    const connack = acceptedConnackBytes(p, present);
    if (connack) this.push(connack);
    else this.send(acceptedConnack(p, present, this.ctx.limits, expiryMs / 1000, assigned));
    this.audit('session.connected', connectedAuditData(p, d.principal, this.sock.transport, this.clientId, expiryMs / 1000, present));
    // Registered before the queue is delivered: a revocation that arrived during CONNECT ends the
    // session right here (the registry tells its listeners on add), and the queue is not handed over.
    this.live = { session: this.session, transport: 'mqtt', principal: d.principal, end: this.revoked.bind(this) };
    this.ctx.live?.add(this.live);
    if ((this.state as SessionState) !== 'open') return;
    if (claimed) for (const q of queuedDeliveries(this.ctx, claimed.messages, this.subs, v, this.maxOut)) this.outbox.sendQos1(q.template, q.offset, true);
    // The queue is in the in-flight window now: a close from here parks it from there.
    this.persistent?.delivered();
    this.outbox.release();
    // A resumed `$commands/<device>` filter gets the device's pending commands, as a SUBSCRIBE would.
    for (const pattern of this.subs.keys()) if (isReservedTopic(pattern)) this.order.run(() => attachCommands(this, pattern));
    for (const q of this.reader.takeEarly()) {
      if (this.state !== 'open') break;
      this.dispatch(q);
    }
  }

  subscriptionsChanged(): void {
    this.persistent?.storeSubscriptions(this.subs);
  }

  holdFleet(pattern: string, detach: () => void): void {
    this.fleet.hold(pattern, detach, this.state === 'open' && this.subs.has(pattern));
  }

  dropFleet(pattern: string): boolean {
    return this.fleet.drop(pattern);
  }

  /**
   * Revoked or suspended (hub/access): MQTT 5 hears DISCONNECT 0x98, 3.1.1 a plain close. The
   * identity behind the Will is void, so no Will (as on token expiry). A persistent session is
   * ended, not parked: its queue is discarded and never handed to a later connection.
   */
  private revoked(_why: SessionEnd, reason: string): void {
    this.will.suppress();
    if (this.persistent) this.persistent.expiryMs = 0;
    this.disconnect(Reason.administrativeAction, reason);
  }

  /** Another connection registered the same (org, sub, client id); `clean`: it ends this session. */
  takenOver(clean = false): void {
    this.will.takenOver(clean);
    this.disconnect(Reason.sessionTakenOver, 'session taken over');
  }

  /** Refuses CONNECT: CONNACK with the code of `why` (docs/mqtt.md), then the ordinary close, never a Will. */
  refuse(why: ConnectRefusal, auditReason: string = why): void {
    if (this.state === 'closed') return;
    this.audit('session.rejected', { reason: auditReason, transport: 'mqtt', via: this.sock.transport, clientId: clip(this.clientId) }, true);
    this.send(refusedConnack(this.version, why));
    this.will.suppress();
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
    this.backlog.clear();
    const p = this.persistent;
    // A session claimed during CONNECT is parked too, with its claimed queue (not yet delivered).
    const parked = (wasOpen || !!p?.held) && !!p?.end({ version: this.version, subs: this.subs, qos2: this.qos2, pending: this.outbox.pending(), registrant: this });
    this.release();
    // While its session resumes, the connection keeps holding what its subscriptions deliver: the
    // resume parks that, then lets them go (`connect`).
    if (!p?.resuming) this.leaveFanout();
    if (!wasOpen) return;
    this.will.onClose(this.ctx, this, parked ? { key: p!.ref.key, expiryMs: p!.expiryMs } : undefined);
    this.audit('session.disconnected', { transport: 'mqtt', reason, durationMs: Date.now() - this.openedAt });
    if (this.ctx.log.isLevelEnabled('debug')) this.log.debug({ reason }, 'mqtt closed');
  }

  /** Drops timers, fleet deliveries, presence, connection slots and the client-id registration. */
  private release(): void {
    if (this.expTimer) clearTimeout(this.expTimer);
    this.expTimer = undefined;
    this.fleet.clear();
    this.ctx.presence?.disconnected(this.session);
    this.ctx.quotas.release(this.slots);
    this.slots = [];
    this.ctx.sessions.delete(this);
    if (this.live) this.ctx.live?.remove(this.live);
    this.live = undefined;
    if (this.key) this.ctx.takeover.release(this.key, this);
  }

  /** Drops the subscriptions (bus patterns and the org's pattern count) and the deliveries held or in flight. */
  private leaveFanout(): void {
    if (this.principal) {
      for (const pattern of this.subs.keys()) {
        this.ctx.fanout.remove(this.principal.org, pattern, this);
        this.ctx.quotas.dropPattern(this.principal.org, pattern);
      }
    }
    this.subs.clear();
    this.outbox.clear();
  }

  /** Deliveries held or unacknowledged, oldest first (`Outbox.pending`). */
  pending(): { bytes: Buffer; sent: boolean }[] {
    return this.outbox.pending();
  }

  /** Records an audit event in the principal's org (none before authentication, or with `preAuth`). */
  audit(type: AuditType, data: Record<string, unknown>, preAuth = false): void {
    const org = preAuth || !this.principal ? undefined : this.principal.org;
    this.ctx.audit.record(org, type, data, { actor: this.principal?.sub, session: this.session });
  }
}
