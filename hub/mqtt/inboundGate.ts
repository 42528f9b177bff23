import type { IConnectPacket, Packet } from 'mqtt-packet';
import { Reason } from './codes.ts';
import { createPacketParser } from './packetParser.ts';
import { overPacketLimit } from './limits.ts';
import type { Version } from './outbound.ts';
import type { MqttSocket } from './outbox.ts';
import type { SessionState } from './sessionPort.ts';
import type { SessionStats } from './bridgeContext.ts';

/** Packets accepted between CONNECT and CONNACK (token verification, session resume). */
export const MAX_EARLY = 1000;
/** Bytes of packets accepted between CONNECT and CONNACK: a client cannot park megabytes pre-auth. */
export const MAX_EARLY_BYTES = 1024 * 1024;
/**
 * Bytes of PUBLISH packets queued behind a pending Redis or event-store call: past it the socket
 * stops being read until the queue is under half (so a fast sender is held back by TCP, not
 * buffered); past 4 times it (a transport that cannot pause) the client is dropped.
 */
export const MAX_QUEUED_BYTES = 4 * 1024 * 1024;

/** Packets received while CONNECT is being authorised, bounded in count and bytes; replayed after CONNACK. */
export class EarlyPackets {
  private list: Packet[] = [];
  private bytes = 0;

  /** Keeps `p`; false when the bound is passed (the client is dropped). */
  push(p: Packet): boolean {
    this.bytes += p.length ?? 0;
    if (this.list.length > MAX_EARLY || this.bytes > MAX_EARLY_BYTES) return false;
    this.list.push(p);
    return true;
  }

  /** What was kept, oldest first; the buffer is empty afterwards. */
  take(): Packet[] {
    const out = this.list;
    this.list = [];
    this.bytes = 0;
    return out;
  }
}

/**
 * The bytes of PUBLISH packets waiting behind a pending call of one connection: pauses reading
 * the socket past MAX_QUEUED_BYTES and resumes it under half of that. Also the hold after a
 * rate-limit refusal (`hold`): the socket is not read for its retry time, so a client that keeps
 * sending is held back by TCP instead of being parsed and refused packet by packet.
 */
export class PublishBacklog {
  private bytes = 0;
  private paused = false;
  private over = false;
  private held = false;

  /** `stats`: the node-wide gauge of queued bytes and counts of pauses and holds (metrics). */
  constructor(
    private readonly sock: Pick<MqttSocket, 'pause' | 'resume'>,
    private readonly stats: Pick<SessionStats, 'pauses' | 'inboundQueuedBytes' | 'holds'>,
  ) {}

  /** A PUBLISH of `len` bytes waits; false past 4 × MAX_QUEUED_BYTES (the client is dropped). */
  add(len: number): boolean {
    this.bytes += len;
    this.stats.inboundQueuedBytes += len;
    if (this.bytes > MAX_QUEUED_BYTES && !this.over) {
      this.over = true;
      if (!this.paused && this.sock.pause) this.stats.pauses++;
      this.update();
    }
    return this.bytes <= MAX_QUEUED_BYTES * 4;
  }

  /**
   * Stops reading the socket for `ms` after a refusal (a transport that cannot pause is not held;
   * its packets still wait behind the returned promise). Resolves when the hold ends.
   */
  hold(ms: number): Promise<void> {
    if (!this.held) {
      this.held = true;
      this.stats.holds++;
      this.update();
    }
    return new Promise((r) =>
      setTimeout(() => {
        this.held = false;
        this.update();
        r();
      }, ms + 1), // +1: a timer may fire up to a millisecond before performance.now() reaches the hold's end
    );
  }

  /** The connection ends: what still waits is never handled. */
  clear(): void {
    this.stats.inboundQueuedBytes -= this.bytes;
    this.bytes = 0;
  }

  /** The waiting PUBLISH of `len` bytes is being handled now. */
  taken(len: number): void {
    this.bytes -= len;
    this.stats.inboundQueuedBytes -= len;
    if (this.over && this.bytes <= MAX_QUEUED_BYTES / 2) {
      this.over = false;
      this.update();
    }
  }

  private update(): void {
    const want = this.over || this.held;
    if (want === this.paused || !this.sock.pause) return;
    this.paused = want;
    if (want) this.sock.pause();
    else this.sock.resume?.();
  }
}

/**
 * Takes the plain PUBACKs at the start of `chunk`, calls `ack` with each packet id, and returns
 * how many bytes they were; the caller hands the rest to the parser. Plain: remaining length 2
 * (every 3.1.1 PUBACK), or for MQTT 5 also reason 0x00 with no properties (3 or 4 bytes, as
 * MQTT.js sends). Only for a parser holding no partial packet. Such a PUBACK is fully determined by
 * its bytes, so this is what mqtt-packet would emit, without a packet object and an event per ack:
 * a resumed session's drain reads little else.
 */
export function takePubacks(chunk: Buffer, version: 4 | 5, ack: (id: number) => void): number {
  let i = 0;
  for (;;) {
    if (i + 4 > chunk.length || chunk[i] !== 0x40) return i;
    const len = chunk[i + 1];
    if (len !== 2 && (version !== 5 || (len !== 3 && len !== 4) || i + 2 + len > chunk.length || chunk[i + 4] !== 0 || (len === 4 && chunk[i + 5] !== 0))) return i;
    ack((chunk[i + 2] << 8) | chunk[i + 3]);
    i += 2 + len;
  }
}

/** What a `PacketReader` reads of its connection. */
export interface ReaderView {
  readonly state: SessionState;
  readonly version: Version;
}

/** What a `PacketReader` hands its connection. */
export interface ReaderHandlers {
  /** The first packet, a CONNECT (the owner leaves 'connecting'). */
  onConnect(p: IConnectPacket): void;
  /** A packet of the open connection. */
  onPacket(p: Packet): void;
  /** A PUBACK of the open connection, taken without the parser. */
  onAck(id: number): void;
  /** A protocol fault: close with `code`. */
  violation(code: number, reason: string): void;
  /** A packet longer than the limit (declared or buffered). */
  tooLarge(): void;
}

/**
 * Reads the packets of one connection off the wire with mqtt-packet: the first must be CONNECT;
 * those that arrive while it is authorised wait, bounded (`EarlyPackets`, replayed by the owner
 * after CONNACK); after that each goes to the owner, plain PUBACKs without the parser
 * (`takePubacks`). A packet over `maxPacket` is refused as soon as its declared length is read,
 * before its body is buffered. Never throws.
 */
export class PacketReader {
  private readonly parser = createPacketParser(4);
  /** The parser's buffer and state (a partial packet is pending unless both are empty). */
  private readonly internals = this.parser as unknown as { packet: { length: number }; _list: { length: number }; _stateCounter: number };
  private readonly early = new EarlyPackets();
  constructor(
    private readonly conn: ReaderView,
    private readonly on: ReaderHandlers,
    private readonly maxPacket: number,
  ) {
    this.parser.on('packet', (p: Packet) => this.route(p));
    this.parser.on('error', (err: Error) => on.violation(Reason.malformedPacket, `malformed packet: ${err.message}`));
  }

  feed(chunk: Buffer): void {
    const o = this.on;
    const p = this.internals;
    if (this.conn.state === 'open' && p._list.length === 0 && p._stateCounter === 0) {
      const n = takePubacks(chunk, this.conn.version, o.onAck);
      if (n === chunk.length) return;
      if (n > 0) chunk = chunk.subarray(n);
    }
    try {
      this.parser.parse(chunk);
    } catch (err) {
      return o.violation(Reason.malformedPacket, `malformed packet: ${(err as Error).message}`);
    }
    if (this.conn.state !== 'closed' && overPacketLimit(p.packet.length, p._list.length, this.maxPacket)) o.tooLarge();
  }

  /** The packets that arrived before CONNACK, oldest first (the buffer is empty afterwards). */
  takeEarly(): Packet[] {
    return this.early.take();
  }

  private route(p: Packet): void {
    const o = this.on;
    const state = this.conn.state;
    if (state !== 'closed' && (p.length ?? 0) > this.maxPacket) return o.tooLarge();
    switch (state) {
      case 'closed':
        return;
      case 'connecting':
        if (p.cmd !== 'connect') return o.violation(Reason.protocolError, `first packet must be CONNECT, got ${p.cmd}`);
        return o.onConnect(p);
      case 'authenticating':
        if (!this.early.push(p)) o.violation(Reason.quotaExceeded, 'too many packets before CONNACK');
        return;
      case 'open':
        return o.onPacket(p);
    }
  }
}
