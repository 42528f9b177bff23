import mqttPacket from 'mqtt-packet';

/**
 * Outbound PUBLISH encoding. A message is encoded once per protocol version and QoS and the bytes
 * are shared by every subscriber; QoS 1 copies differ only in the 2-byte packet id, which is
 * patched into a copy of the shared encoding (mqtt-packet generates it; nothing is hand-built).
 */
export type Version = 4 | 5;

export interface OutMessage {
  topic: string;
  payload: Uint8Array;
  retain: boolean;
  /** Sent before and not acknowledged (a redelivery of a persistent session). */
  dup?: boolean;
  /** MQTT 5 Message Expiry Interval to send: whole seconds left (absent = none). */
  expiryS?: number;
}

/** Encodes one PUBLISH. QoS 1 packets carry id 1, to be replaced by `withPacketId`. */
export function encodePublish(m: OutMessage, qos: 0 | 1, version: Version): Buffer {
  return mqttPacket.generate(
    {
      cmd: 'publish',
      topic: m.topic,
      // NATS hands over plain Uint8Arrays; mqtt-packet needs a Buffer (a view, not a copy).
      payload: Buffer.isBuffer(m.payload) ? m.payload : Buffer.from(m.payload.buffer, m.payload.byteOffset, m.payload.byteLength),
      qos,
      retain: m.retain,
      dup: !!m.dup && qos === 1,
      messageId: qos === 1 ? 1 : undefined,
      ...(version === 5 && m.expiryS ? { properties: { messageExpiryInterval: m.expiryS } } : {}),
    },
    { protocolVersion: version },
  );
}

/** Offset of the packet id in a QoS 1 PUBLISH encoding: after the fixed header and the topic. */
export function packetIdOffset(encoded: Buffer): number {
  let i = 1;
  while (encoded[i] & 0x80) i++;
  i++;
  return i + 2 + encoded.readUInt16BE(i);
}

/** A copy of a QoS 1 encoding carrying `id`. */
export function withPacketId(encoded: Buffer, offset: number, id: number): Buffer {
  const out = Buffer.allocUnsafe(encoded.length);
  encoded.copy(out);
  out.writeUInt16BE(id, offset);
  return out;
}

/** Something that collects bytes for one connection until the end of the turn. */
export interface Flushable {
  flush(): void;
}

/**
 * Coalesces writes: a connection that got bytes during this turn is flushed once, in a
 * setImmediate, as one socket write. Messages that NATS hands over in one read thus leave in
 * one TCP segment (or WebSocket frame) per subscriber instead of one per message.
 */
export class FlushScheduler {
  private dirty: Flushable[] = [];
  private scheduled = false;

  mark(f: Flushable): void {
    this.dirty.push(f);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.run);
    }
  }

  private readonly run = (): void => {
    this.scheduled = false;
    const list = this.dirty;
    this.dirty = [];
    for (const f of list) f.flush();
  };
}
