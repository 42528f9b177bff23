import mqttPacket, { type Packet } from 'mqtt-packet';
import { randomUUID } from 'node:crypto';
import type { ClientContext } from '../core/context.ts';
import type { Principal } from '../auth/principal.ts';
import type { LiveSession } from '../core/sessions.ts';
import { Reason } from './codes.ts';
import { InflightWindow } from './inflight.ts';
import { SerialQueue } from './serial.ts';
import { clip, overPacketLimit, TokenBucket } from './limits.ts';
import type { Version } from './outbound.ts';
import type { Subscriber } from './mqttFanout.ts';
import type { BridgeContext } from './bridgeContext.ts';
import { handleConnect, publishWill, type Will } from './sessionConnect.ts';
import { handlePublish, handlePubrel } from './sessionPublish.ts';
import { handleSubscribe, handleUnsubscribe } from './sessionSubscribe.ts';
import { NO_LIMITS, type RateLimits } from '../limits/connLimits.ts';
import type { Slot } from '../limits/limitService.ts';

/** The byte pipe under a session: a TCP socket or an MQTT-over-WebSocket connection. */
export interface MqttSocket {
  readonly transport: 'tcp' | 'ws';
  readonly remote: string;
  write(bytes: Buffer): void;
  /** Bytes queued in the socket and not yet sent. */
  buffered(): number;
  /** Closes after what was written so far (graceful). */
  end(): void;
  /** Stops reading from the peer (TCP backpressure) until `resume`; absent where the transport cannot. */
  pause?(): void;
  resume?(): void;
}

export type SessionState = 'connecting' | 'authenticating' | 'open' | 'closed';

type AuditType = Parameters<BridgeContext['audit']['record']>[1];

/** Packets queued behind a pending Redis or event-store call before the client is dropped. */
const MAX_PENDING = 10_000;
/** Packets accepted between CONNECT and CONNACK (token verification). */
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
 * One MQTT connection (3.1.1 or 5): parses packets with mqtt-packet, authenticates CONNECT with
 * the JWT in the password, and maps PUBLISH / SUBSCRIBE onto the org's topics through the same
 * grants as WebSocket. Packets after CONNECT are handled strictly in arrival order (acks too),
 * even when one of them waits for Redis or the event store.
 *
 * This file holds the packet loop, outbound buffering and closing; the handlers live in
 * sessionConnect.ts, sessionPublish.ts and sessionSubscribe.ts. Members marked "internal" are for
 * those sibling modules only.
 */
export class MqttSession implements Subscriber, ClientContext {
  principal!: Principal;
  grants!: ClientContext['grants'];
  readonly session = randomUUID();
  version: Version = 4;
  maxOut = Infinity;
  clientId = '';
  keepaliveMs = 0;
  lastSeen = Date.now();
  readonly openedAt = Date.now();
  state: SessionState = 'connecting';

  /** Internal: packets received while the token is being verified. */
  early: Packet[] = [];
  private earlyBytes = 0;
  private queuedBytes = 0;
  private paused = false;
  /** Internal: filter → granted QoS of this session's subscriptions. */
  readonly subs = new Map<string, 0 | 1>();
  /** Internal: inbound QoS 2 ids between PUBREC and PUBREL (each published once). */
  readonly qos2 = new Set<number>();
  /** Internal: outbound QoS 1 ids awaiting PUBACK and the deliveries queued behind them. */
  readonly inflight: InflightWindow;
  /** Internal: the Will accepted at CONNECT, if any. */
  will: Will | undefined;
  /** Internal: the client said DISCONNECT (without reason 0x04): no Will. */
  graceful = false;
  /** Internal: no Will whatever happens (refused CONNECT, token expiry). */
  suppressWill = false;
  /** Internal: why the connection ends (logs and the `session.disconnected` audit event). */
  closeReason = 'client closed';
  /** Internal: end the socket once the pending bytes are written. */
  endAfterFlush = false;
  /** Internal: detachers of `$commands/<device>` subscriptions (fleet delivery, not the bus). */
  fleet: Map<string, () => void> | undefined;
  /** Internal: this session in the node's registry, once open. */
  live: LiveSession | undefined;
  /** Internal: the token-expiry timer. */
  expTimer: NodeJS.Timeout | undefined;
  /** Internal: the tier's rate limits and quotas (hub/limits), set at CONNECT. */
  lim: RateLimits = NO_LIMITS;
  /** Internal: connection slots (IP, org, user) given back at teardown. */
  slots: Slot[] = [];

  private readonly parser = mqttPacket.parser({ protocolVersion: 4 });
  private out: Buffer[] = [];
  private outBytes = 0;
  private marked = false;
  private readonly bucket: TokenBucket;
  private readonly order: SerialQueue;

  constructor(
    readonly ctx: BridgeContext,
    readonly sock: MqttSocket,
  ) {
    this.bucket = new TokenBucket(ctx.limits.rate);
    this.inflight = new InflightWindow(ctx.limits.maxInflight, ctx.limits.maxQueued);
    this.order = new SerialQueue(MAX_PENDING, {
      onError: (err) => this.fail(err),
      onOverflow: () => this.disconnect(Reason.quotaExceeded, 'too many pending packets'),
      stopped: () => this.state === 'closed',
    });
    this.parser.on('packet', (p) => this.onPacket(p));
    this.parser.on('error', (err: Error) => this.violation(Reason.malformedPacket, `malformed packet: ${err.message}`));
    ctx.sessions.add(this);
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

  // ---- outbound -----------------------------------------------------------------------------

  /** Internal: queues bytes for this turn's single socket write. */
  push(b: Buffer): void {
    this.out.push(b);
    this.outBytes += b.length;
    this.markDirty();
  }

  /** Internal: encodes and queues one packet (dropped once closed). */
  send(p: Packet): void {
    if (this.state === 'closed') return;
    this.push(mqttPacket.generate(p, { protocolVersion: this.version }));
  }

  private markDirty(): void {
    if (!this.marked) {
      this.marked = true;
      this.ctx.flusher.mark(this);
    }
  }

  flush(): void {
    this.marked = false;
    if (this.out.length > 0) {
      const bytes = this.out.length === 1 ? this.out[0] : Buffer.concat(this.out, this.outBytes);
      this.out = [];
      this.outBytes = 0;
      if (this.state !== 'closed' || this.endAfterFlush) this.sock.write(bytes);
    }
    if (this.endAfterFlush) {
      this.endAfterFlush = false;
      this.sock.end();
    } else if (this.sock.buffered() > this.ctx.limits.maxBackpressure) {
      this.audit('limit.hit', { limit: 'backpressure', max: this.ctx.limits.maxBackpressure });
      this.disconnect(Reason.quotaExceeded, 'slow consumer');
    }
  }

  sendShared(bytes: Buffer): void {
    if (this.state === 'open') this.push(bytes);
  }

  sendQos1(template: Buffer, offset: number): void {
    if (this.state !== 'open') return;
    const r = this.inflight.offer(template, offset);
    if (r === 'queued') return;
    if (r === 'full') {
      this.audit('limit.hit', { limit: 'inflight_queue', max: this.ctx.limits.maxQueued });
      return this.disconnect(Reason.quotaExceeded, 'too many unacknowledged QoS 1 messages');
    }
    this.push(r);
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
        void handleConnect(this, p);
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

  /** Internal: handles one packet of an open session (also replays `early` after CONNACK). */
  dispatch(p: Packet): void {
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
      case 'puback': {
        const next = this.inflight.ack(p.messageId ?? 0);
        if (next) this.push(next);
        return;
      }
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
    if (this.queuedBytes > MAX_QUEUED_BYTES && !this.paused && this.sock.pause) {
      this.paused = true;
      this.sock.pause();
    }
    if (this.queuedBytes > MAX_QUEUED_BYTES * 4) return this.disconnect(Reason.quotaExceeded, 'too many bytes queued');
    this.order.run(() => {
      this.queuedBytes -= len;
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
    this.endAfterFlush = true;
    this.markDirty();
    this.teardown(this.closeReason);
  }

  private teardown(reason: string): void {
    const wasOpen = this.state === 'open';
    this.state = 'closed';
    this.release();
    if (!wasOpen) return;
    if (this.will && !this.graceful && !this.suppressWill) publishWill(this, this.will);
    this.audit('session.disconnected', { transport: 'mqtt', reason, durationMs: Date.now() - this.openedAt });
  }

  /** Internal: drops timers, subscriptions, queued deliveries and the client-id registration. */
  release(): void {
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
    this.inflight.clear();
    this.ctx.sessions.delete(this);
    if (this.live) this.ctx.live?.remove(this.live);
    this.ctx.releaseClientId(this);
  }

  /** Internal: records an audit event in the principal's org (none before authentication, or with `preAuth`). */
  audit(type: AuditType, data: Record<string, unknown>, preAuth = false): void {
    const org = preAuth || !this.principal ? undefined : this.principal.org;
    this.ctx.audit.record(org, type, data, { actor: this.principal?.sub, session: this.session });
  }
}
