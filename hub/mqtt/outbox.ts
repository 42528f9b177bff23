import mqttPacket, { type Packet } from 'mqtt-packet';
import { InflightWindow } from './inflight.ts';
import type { FlushScheduler, Version } from './outbound.ts';

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

/** What the outbox asks of its connection. */
export interface OutboxOwner {
  /** 'open' sends, 'closed' drops, anything else holds deliveries while `hold` is on. */
  readonly state: 'connecting' | 'authenticating' | 'open' | 'closed';
  readonly version: Version;
  /** More than `maxBackpressure` bytes wait in the socket. */
  slowConsumer(): void;
  /** More QoS 1 deliveries wait behind the in-flight window than it holds. */
  inflightFull(): void;
}

type Held = { shared: Buffer } | { template: Buffer; offset: number; owned: boolean };

/**
 * Outbound side of one connection: gathers this turn's packets into one socket write (one
 * `FlushScheduler` pass for the whole node), keeps the QoS 1 in-flight window, and holds
 * deliveries that arrive while a persistent session is being resumed (sent after its queue).
 */
export class Outbox {
  readonly inflight: InflightWindow;
  private out: Buffer[] = [];
  private outBytes = 0;
  private marked = false;
  private endAfterFlush = false;
  private held: Held[] | undefined;

  constructor(
    private readonly owner: OutboxOwner,
    private readonly sock: MqttSocket,
    private readonly flusher: FlushScheduler,
    limits: { maxInflight: number; maxQueued: number; maxBackpressure: number },
  ) {
    this.inflight = new InflightWindow(limits.maxInflight, limits.maxQueued);
    this.maxBackpressure = limits.maxBackpressure;
  }

  private readonly maxBackpressure: number;

  /** Queues bytes for this turn's single socket write. */
  push(b: Buffer): void {
    this.out.push(b);
    this.outBytes += b.length;
    if (!this.marked) {
      this.marked = true;
      this.flusher.mark(this);
    }
  }

  /** Encodes and queues one packet (dropped once closed). */
  send(p: Packet): void {
    if (this.owner.state !== 'closed') this.push(mqttPacket.generate(p, { protocolVersion: this.owner.version }));
  }

  /** Ends the socket once what is queued has been written. */
  endSoon(): void {
    this.endAfterFlush = true;
    if (!this.marked) {
      this.marked = true;
      this.flusher.mark(this);
    }
  }

  flush(): void {
    this.marked = false;
    if (this.out.length > 0) {
      const bytes = this.out.length === 1 ? this.out[0] : Buffer.concat(this.out, this.outBytes);
      this.out = [];
      this.outBytes = 0;
      if (this.owner.state !== 'closed' || this.endAfterFlush) this.sock.write(bytes);
    }
    if (this.endAfterFlush) {
      this.endAfterFlush = false;
      this.sock.end();
    } else if (this.sock.buffered() > this.maxBackpressure) {
      this.owner.slowConsumer();
    }
  }

  sendShared(bytes: Buffer): void {
    if (this.owner.state === 'open') this.push(bytes);
    else this.held?.push({ shared: bytes });
  }

  /** A QoS 1 delivery; `owned`: the encoding is this connection's alone (see `InflightWindow.offer`). */
  sendQos1(template: Buffer, offset: number, owned = false): void {
    if (this.owner.state !== 'open') {
      this.held?.push({ template, offset, owned });
      return;
    }
    const r = this.inflight.offer(template, offset, owned);
    if (r === 'full') return this.owner.inflightFull();
    if (r !== 'queued') this.push(r);
  }

  /** PUBACK: frees the id and sends the next waiting delivery. */
  ack(id: number): void {
    const next = this.inflight.ack(id);
    if (next) this.push(next);
  }

  /** Starts holding deliveries (a persistent session is being resumed). */
  hold(): void {
    this.held = [];
  }

  /** Sends what was held, in arrival order, and stops holding. */
  release(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const h of held) {
      if ('shared' in h) this.sendShared(h.shared);
      else this.sendQos1(h.template, h.offset, h.owned);
    }
  }

  /**
   * QoS 1 deliveries not acknowledged, oldest first: the in-flight window's (`InflightWindow.pending`),
   * then those still held behind a resume (never sent).
   */
  pending(): { bytes: Buffer; sent: boolean }[] {
    const out = this.inflight.pending();
    for (const h of this.held ?? []) if (!('shared' in h)) out.push({ bytes: h.template, sent: false });
    return out;
  }

  /** The connection is gone: drops held and waiting deliveries. */
  clear(): void {
    this.held = undefined;
    this.inflight.clear();
  }
}
