import mqttPacket, { type IConnectPacket, type IPublishPacket, type ISubscribePacket, type IUnsubscribePacket, type Packet } from 'mqtt-packet';
import { randomUUID } from 'node:crypto';
import { compileGrants } from '../acl/grants.ts';
import { isValidPattern, isValidTopic } from '../acl/topic.ts';
import { AuthError, HubError } from '../errors.ts';
import type { ClientContext } from '../core/context.ts';
import type { Principal } from '../auth/principal.ts';
import { ConnackV4, Reason, SHARE_PREFIX, SUBACK_FAILURE_V4 } from './codes.ts';
import { TokenBucket } from './limits.ts';
import { encodePublish, packetIdOffset, withPacketId, type Version } from './outbound.ts';
import type { Subscriber } from './mqttFanout.ts';
import type { BridgeContext } from './bridgeContext.ts';
import { contentTypeOf, handleCommand, isCommandTopic } from './inbound.ts';
import type { RetainedMessage } from './retained.ts';
import type { ContentType } from '../bus/bus.ts';

/** The byte pipe under a session: a TCP socket or an MQTT-over-WebSocket connection. */
export interface MqttSocket {
  readonly transport: 'tcp' | 'ws';
  readonly remote: string;
  write(bytes: Buffer): void;
  /** Bytes queued in the socket and not yet sent. */
  buffered(): number;
  /** Closes after what was written so far (graceful). */
  end(): void;
}

type State = 'connecting' | 'authenticating' | 'open' | 'closed';

interface Will {
  topic: string;
  payload: Buffer;
  qos: 0 | 1;
  retain: boolean;
}

/** Milliseconds until `exp`, clamped so that setTimeout never overflows. */
function msUntil(exp: number): number {
  return Math.min(Math.max(exp * 1000 - Date.now(), 0), 2 ** 31 - 1);
}

/** Shortens client-chosen strings before they reach logs and audit data. */
function clip(s: string | undefined, n = 128): string | undefined {
  return s === undefined ? undefined : s.length > n ? `${s.slice(0, n)}…` : s;
}

/**
 * One MQTT connection (3.1.1 or 5): parses packets with mqtt-packet, authenticates CONNECT with
 * the JWT in the password, and maps PUBLISH / SUBSCRIBE onto the org's topics through the same
 * grants as WebSocket. Packets after CONNECT are handled strictly in arrival order (acks too),
 * even when one of them waits for Redis or the event store.
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
  state: State = 'connecting';

  private readonly parser = mqttPacket.parser({ protocolVersion: 4 });
  private early: Packet[] = [];
  private out: Buffer[] = [];
  private outBytes = 0;
  private marked = false;
  private readonly subs = new Map<string, 0 | 1>();
  private will: Will | undefined;
  private graceful = false;
  private suppressWill = false;
  private closeReason = 'client closed';
  private expTimer: NodeJS.Timeout | undefined;
  private readonly bucket: TokenBucket;
  private tail: Promise<void> | null = null;
  private queued = 0;
  // Outbound QoS 1: ids awaiting PUBACK, and deliveries waiting for a free slot.
  private readonly inflight = new Set<number>();
  private sendQuota: number;
  private waiting: { template: Buffer; offset: number }[] = [];
  private nextId = 1;
  // Inbound QoS 2 ids between PUBREC and PUBREL (each published once).
  private readonly qos2 = new Set<number>();

  constructor(
    private readonly ctx: BridgeContext,
    private readonly sock: MqttSocket,
  ) {
    this.bucket = new TokenBucket(ctx.limits.rate);
    this.sendQuota = ctx.limits.maxInflight;
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
    if ((this.state as State) !== 'closed' && (p.packet.length > this.ctx.limits.maxPacket || p._list.length > this.ctx.limits.maxPacket + 8)) {
      this.audit('limit.hit', { limit: 'packet_size', max: this.ctx.limits.maxPacket });
      this.disconnect(Reason.packetTooLarge, 'packet too large');
    }
  }

  /** The socket went away (or was closed by us). Publishes the will unless the client said goodbye. */
  onSocketClosed(): void {
    this.teardown(this.closeReason === 'client closed' && !this.graceful ? 'connection lost' : this.closeReason);
  }

  // ---- outbound -----------------------------------------------------------------------------

  private push(b: Buffer): void {
    this.out.push(b);
    this.outBytes += b.length;
    if (!this.marked) {
      this.marked = true;
      this.ctx.flusher.mark(this);
    }
  }

  private send(p: Packet): void {
    if (this.state === 'closed') return;
    this.push(mqttPacket.generate(p, { protocolVersion: this.version }));
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
  private endAfterFlush = false;

  sendShared(bytes: Buffer): void {
    if (this.state === 'open') this.push(bytes);
  }

  sendQos1(template: Buffer, offset: number): void {
    if (this.state !== 'open') return;
    if (this.inflight.size < this.sendQuota) return this.push(withPacketId(template, offset, this.allocId()));
    if (this.waiting.length >= this.ctx.limits.maxQueued) {
      this.audit('limit.hit', { limit: 'inflight_queue', max: this.ctx.limits.maxQueued });
      return this.disconnect(Reason.quotaExceeded, 'too many unacknowledged QoS 1 messages');
    }
    this.waiting.push({ template, offset });
  }

  private allocId(): number {
    // At most `sendQuota` (< 65535) ids are in use, so this terminates.
    let id = this.nextId;
    while (this.inflight.has(id)) id = id === 65535 ? 1 : id + 1;
    this.nextId = id === 65535 ? 1 : id + 1;
    this.inflight.add(id);
    return id;
  }

  private onPuback(id: number): void {
    if (!this.inflight.delete(id)) return;
    const next = this.waiting.shift();
    if (next) this.push(withPacketId(next.template, next.offset, this.allocId()));
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
        void this.onConnect(p);
        return;
      case 'authenticating':
        if (this.early.length > 1000) return this.violation(Reason.quotaExceeded, 'too many packets before CONNACK');
        this.early.push(p);
        return;
      case 'open':
        return this.dispatch(p);
    }
  }

  private dispatch(p: Packet): void {
    switch (p.cmd) {
      case 'publish':
        if (!this.bucket.take()) {
          this.audit('limit.hit', { limit: 'rate', max: this.ctx.limits.rate });
          return this.disconnect(Reason.messageRateTooHigh, 'message rate too high');
        }
        if (this.tail === null) {
          // Hot path: nothing pending, handle in place without a closure.
          try {
            const r = this.onPublish(p);
            if (r instanceof Promise) this.track(r);
          } catch (err) {
            this.fail(err);
          }
          return;
        }
        return this.serial(() => this.onPublish(p));
      case 'puback':
        return this.onPuback(p.messageId ?? 0);
      case 'pubrel':
        return this.serial(() => {
          this.qos2.delete(p.messageId ?? 0);
          this.send({ cmd: 'pubcomp', messageId: p.messageId });
        });
      case 'subscribe':
        return this.serial(() => this.onSubscribe(p));
      case 'unsubscribe':
        return this.serial(() => this.onUnsubscribe(p));
      case 'pingreq':
        return this.send({ cmd: 'pingresp' });
      case 'disconnect':
        // MQTT 5 reason 0x04 asks for the will to be published all the same.
        this.graceful = !(this.version === 5 && p.reasonCode === Reason.disconnectWithWill);
        this.closeReason = 'client disconnected';
        return this.serial(() => this.close());
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

  /**
   * Runs `fn` after every earlier packet's handling has finished: synchronously when nothing is
   * pending (the hot path), chained otherwise. Keeps acks and bus publishes in arrival order.
   */
  private serial(fn: () => void | Promise<void>): void {
    if (this.tail === null) {
      let r: void | Promise<void>;
      try {
        r = fn();
      } catch (err) {
        return this.fail(err);
      }
      if (r instanceof Promise) this.track(r);
      return;
    }
    if (++this.queued > 10000) return this.disconnect(Reason.quotaExceeded, 'too many pending packets');
    this.track(
      this.tail.then(() => {
        this.queued--;
        if (this.state !== 'closed') return fn();
      }),
    );
  }

  private track(p: Promise<void>): void {
    const t: Promise<void> = p.catch((err) => this.fail(err));
    this.tail = t;
    void t.then(() => {
      if (this.tail === t) this.tail = null;
    });
  }

  private fail(err: unknown): void {
    this.ctx.log.error({ err, session: this.session }, 'mqtt packet handling failed');
    this.disconnect(Reason.unspecified, 'internal error');
  }

  private async onConnect(p: IConnectPacket): Promise<void> {
    const v = p.protocolVersion === 5 ? 5 : 4;
    this.version = v;
    this.clientId = p.clientId ?? '';
    this.keepaliveMs = (p.keepalive ?? 0) * 1000;
    const props = p.properties;
    if (v === 5) {
      if (props?.receiveMaximum) this.sendQuota = Math.min(this.sendQuota, props.receiveMaximum);
      if (props?.maximumPacketSize) this.maxOut = props.maximumPacketSize;
    }
    const refuse = (rc4: number, rc5: number, reason: string) => {
      this.audit('session.rejected', { reason, transport: 'mqtt', via: this.sock.transport, clientId: clip(this.clientId) }, true);
      this.send(v === 5 ? { cmd: 'connack', sessionPresent: false, reasonCode: rc5 } : { cmd: 'connack', sessionPresent: false, returnCode: rc4 });
      this.closeReason = reason;
      this.endAfterFlush = true;
      this.suppressWill = true;
      this.state = 'closed';
      this.release();
    };
    if (v === 5 && props?.authenticationMethod) return refuse(ConnackV4.notAuthorized, Reason.badAuthenticationMethod, 'auth_method_unsupported');
    if (this.clientId === '' && !p.clean && v === 4) return refuse(ConnackV4.identifierRejected, Reason.clientIdentifierNotValid, 'client_id_required');
    const token = p.password ? p.password.toString('utf8') : '';
    if (!token) return refuse(ConnackV4.badUserNameOrPassword, Reason.badUserNameOrPassword, 'token_missing');
    let principal: Principal;
    try {
      principal = await this.ctx.verifier.verify(token);
    } catch (err) {
      if (!(err instanceof AuthError)) this.ctx.log.warn({ err }, 'token verification failed unexpectedly');
      return refuse(ConnackV4.notAuthorized, Reason.notAuthorized, err instanceof AuthError ? err.reason : 'token_invalid');
    }
    if (this.state === 'closed') return;
    this.principal = principal;
    this.grants = compileGrants(principal, this.ctx.roleGrants);
    if (p.will) {
      const w = p.will;
      if (!isValidTopic(w.topic)) return refuse(ConnackV4.notAuthorized, Reason.topicNameInvalid, 'will_topic_invalid');
      if (!this.grants.canPublish(w.topic)) {
        this.audit('publish.denied', { topic: w.topic, transport: 'mqtt', will: true });
        return refuse(ConnackV4.notAuthorized, Reason.notAuthorized, 'will_not_granted');
      }
      const payload = typeof w.payload === 'string' ? Buffer.from(w.payload) : w.payload;
      this.will = { topic: w.topic, payload, qos: w.qos ? 1 : 0, retain: !!w.retain };
    }
    let assigned: string | undefined;
    if (this.clientId === '') this.clientId = assigned = `orghub-${this.session}`;
    this.ctx.takeOver(this);
    this.state = 'open';
    this.expTimer = setTimeout(() => {
      // The identity behind the will has lapsed, so the will is not published.
      this.suppressWill = true;
      this.disconnect(Reason.maximumConnectTime, 'token expired');
    }, msUntil(principal.exp));
    if (v === 5) {
      this.send({
        cmd: 'connack',
        sessionPresent: false,
        reasonCode: Reason.success,
        properties: {
          // Sessions are not kept: tell the client so (docs/mqtt.md, "Sessions").
          ...(props?.sessionExpiryInterval ? { sessionExpiryInterval: 0 } : {}),
          receiveMaximum: Math.min(this.ctx.limits.maxInflight, 65535),
          maximumPacketSize: this.ctx.limits.maxPacket,
          topicAliasMaximum: 0,
          retainAvailable: true,
          wildcardSubscriptionAvailable: true,
          subscriptionIdentifiersAvailable: false,
          sharedSubscriptionAvailable: false,
          ...(assigned ? { assignedClientIdentifier: assigned } : {}),
        },
      });
    } else {
      this.send({ cmd: 'connack', sessionPresent: false, returnCode: ConnackV4.accepted });
    }
    this.audit('session.connected', {
      transport: 'mqtt',
      via: this.sock.transport,
      protocolVersion: p.protocolVersion,
      clientId: clip(this.clientId),
      username: clip(p.username),
      roles: principal.roles,
      jti: principal.jti,
    });
    const early = this.early;
    this.early = [];
    for (const q of early) {
      if (this.state !== 'open') break;
      this.dispatch(q);
    }
  }

  private onPublish(p: IPublishPacket): void | Promise<void> {
    const qos = p.qos;
    if (p.properties?.topicAlias !== undefined) return this.disconnect(Reason.topicAliasInvalid, 'topic aliases are not supported (Topic Alias Maximum is 0)');
    const payload = typeof p.payload === 'string' ? Buffer.from(p.payload) : p.payload;
    if (qos === 2) {
      if (this.qos2.has(p.messageId!)) return this.send({ cmd: 'pubrec', messageId: p.messageId });
      if (this.qos2.size >= this.ctx.limits.maxInflight) return this.disconnect(Reason.receiveMaximumExceeded, 'receive maximum exceeded');
    }
    if (isCommandTopic(p.topic)) return handleCommand(this.ctx, this, p.topic, payload).then((code) => this.afterInbound(code, p));
    if (!isValidTopic(p.topic)) {
      this.audit('session.protocol_violation', { reason: 'topic_invalid', topic: clip(p.topic) });
      return this.disconnect(Reason.topicNameInvalid, 'topic outside the hub grammar (segments of A-Z a-z 0-9 _ - ~ : = @)');
    }
    if (!this.grants.canPublish(p.topic)) {
      this.audit('publish.denied', { topic: p.topic, transport: 'mqtt' });
      return this.ack(Reason.notAuthorized, p);
    }
    const contentType = contentTypeOf(payload);
    if (!p.retain) return this.afterInbound(this.toBus(p.topic, payload, contentType), p);
    const msg: RetainedMessage = { topic: p.topic, payload: Buffer.from(payload), contentType, qos: qos === 0 ? 0 : 1, from: this.principal.sub, ts: Date.now() };
    return this.ctx.retained.set(this.principal.org, msg).then(
      () => this.afterInbound(this.toBus(p.topic, payload, contentType), p),
      (err) => {
        this.ctx.log.warn({ err: (err as Error).message }, 'retained store unavailable');
        this.afterInbound(Reason.unspecified, p);
      },
    );
  }

  /** Hands a PUBLISH to the bus; `unspecified` when the bus is down (nothing was published). */
  private toBus(topic: string, payload: Buffer, contentType: ContentType): number {
    try {
      this.ctx.bus.publish(this.principal.org, topic, payload, { contentType, from: this.principal.sub });
      return Reason.success;
    } catch (err) {
      if (err instanceof HubError && err.code === 'unavailable') return Reason.unspecified;
      throw err;
    }
  }

  /** PUBACK (QoS 1) or PUBREC (QoS 2) with `code`; MQTT 3.1.1 carries no code. */
  private ack(code: number, p: IPublishPacket): void {
    if (p.qos === 0 || this.state !== 'open') return;
    if (p.qos === 2 && code < 0x80) this.qos2.add(p.messageId!);
    const cmd = p.qos === 1 ? 'puback' : 'pubrec';
    this.send(this.version === 5 && code !== 0 ? { cmd, messageId: p.messageId, reasonCode: code } : { cmd, messageId: p.messageId });
  }

  /**
   * Acks a handled PUBLISH. A failure the client should retry (`unspecified`: the bus or the store
   * is down, nothing was taken) closes a 3.1.1 connection without an ack, so the client resends
   * after reconnecting; MQTT 5 gets the reason code instead.
   */
  private afterInbound(code: number, p: IPublishPacket): void {
    if (code === Reason.unspecified && this.version === 4) {
      this.closeReason = 'hub unavailable';
      this.close();
      return;
    }
    this.ack(code, p);
  }

  private async onSubscribe(p: ISubscribePacket): Promise<void> {
    const v5 = this.version === 5;
    const granted: number[] = [];
    const retainedFor: { pattern: string; qos: 0 | 1 }[] = [];
    let opened = false;
    for (const s of p.subscriptions) {
      const pattern = s.topic;
      if (pattern.startsWith(SHARE_PREFIX)) {
        granted.push(v5 ? Reason.sharedSubscriptionsNotSupported : SUBACK_FAILURE_V4);
        continue;
      }
      if (!isValidPattern(pattern)) {
        granted.push(v5 ? Reason.topicFilterInvalid : SUBACK_FAILURE_V4);
        continue;
      }
      if (!this.grants.canSubscribe(pattern)) {
        this.audit('subscribe.denied', { pattern, transport: 'mqtt' });
        granted.push(v5 ? Reason.notAuthorized : SUBACK_FAILURE_V4);
        continue;
      }
      const isNew = !this.subs.has(pattern);
      if (isNew && this.subs.size >= this.ctx.limits.maxSubscriptions) {
        this.audit('limit.hit', { limit: 'subscriptions', max: this.ctx.limits.maxSubscriptions, transport: 'mqtt' });
        granted.push(v5 ? Reason.quotaExceeded : SUBACK_FAILURE_V4);
        continue;
      }
      const qos: 0 | 1 = s.qos === 0 ? 0 : 1;
      this.subs.set(pattern, qos);
      if (this.ctx.fanout.add(this.principal.org, pattern, this, qos)) opened = true;
      granted.push(qos);
      const rh = s.rh ?? 0;
      if (rh === 0 || (rh === 1 && isNew)) retainedFor.push({ pattern, qos });
    }
    // The bus subscription is confirmed before SUBACK, so no publish after SUBACK is missed.
    if (opened) await this.ctx.bus.flush().catch(() => {});
    if (this.state !== 'open') return;
    this.send({ cmd: 'suback', messageId: p.messageId, granted });
    for (const r of retainedFor) await this.sendRetained(r.pattern, r.qos);
  }

  private async sendRetained(pattern: string, granted: 0 | 1): Promise<void> {
    let list: RetainedMessage[];
    try {
      list = await this.ctx.retained.match(this.principal.org, pattern);
    } catch (err) {
      this.ctx.log.warn({ err: (err as Error).message, session: this.session }, 'retained messages unavailable for a subscription');
      return;
    }
    if (this.state !== 'open') return;
    for (const m of list) {
      const qos: 0 | 1 = m.qos < granted ? m.qos : granted;
      const bytes = encodePublish({ topic: m.topic, payload: m.payload, retain: true }, qos, this.version);
      if (bytes.length > this.maxOut) continue;
      if (qos === 0) this.push(bytes);
      else this.sendQos1(bytes, packetIdOffset(bytes));
    }
  }

  private onUnsubscribe(p: IUnsubscribePacket): void {
    const codes: number[] = [];
    for (const pattern of p.unsubscriptions) {
      if (this.subs.delete(pattern)) {
        this.ctx.fanout.remove(this.principal.org, pattern, this);
        codes.push(Reason.success);
      } else {
        codes.push(Reason.noSubscriptionExisted);
      }
    }
    this.send(this.version === 5 ? { cmd: 'unsuback', messageId: p.messageId, granted: codes } : { cmd: 'unsuback', messageId: p.messageId, granted: [] });
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
    if (!this.marked) {
      this.marked = true;
      this.ctx.flusher.mark(this);
    }
    this.teardown(this.closeReason);
  }

  private teardown(reason: string): void {
    const wasOpen = this.state === 'open';
    this.state = 'closed';
    this.release();
    if (!wasOpen) return;
    if (this.will && !this.graceful && !this.suppressWill) this.publishWill(this.will);
    this.audit('session.disconnected', { transport: 'mqtt', reason, durationMs: Date.now() - this.openedAt });
  }

  private release(): void {
    if (this.expTimer) clearTimeout(this.expTimer);
    this.expTimer = undefined;
    if (this.principal) for (const pattern of this.subs.keys()) this.ctx.fanout.remove(this.principal.org, pattern, this);
    this.subs.clear();
    this.waiting = [];
    this.ctx.sessions.delete(this);
    this.ctx.releaseClientId(this);
  }

  private publishWill(w: Will): void {
    const org = this.principal.org;
    const contentType = contentTypeOf(w.payload);
    const go = () => {
      try {
        this.ctx.bus.publish(org, w.topic, w.payload, { contentType, from: this.principal.sub });
        this.audit('mqtt.will_published', { topic: w.topic, bytes: w.payload.length, retain: w.retain });
      } catch (err) {
        this.ctx.log.warn({ err: (err as Error).message, session: this.session }, 'last will not published');
      }
    };
    if (!w.retain) return go();
    const msg: RetainedMessage = { topic: w.topic, payload: w.payload, contentType, qos: w.qos, from: this.principal.sub, ts: Date.now() };
    this.ctx.retained.set(org, msg).then(go, (err) => {
      this.ctx.log.warn({ err: (err as Error).message }, 'retained will not stored');
      go();
    });
  }

  private audit(type: Parameters<BridgeContext['audit']['record']>[1], data: Record<string, unknown>, preAuth = false): void {
    const org = preAuth || !this.principal ? undefined : this.principal.org;
    this.ctx.audit.record(org, type, data, { actor: this.principal?.sub, session: this.session });
  }
}
