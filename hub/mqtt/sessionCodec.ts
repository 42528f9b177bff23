import mqttPacket, { type IPublishPacket, type Packet } from 'mqtt-packet';
import type { Version } from './outbound.ts';

/** One queued QoS 1 message of a persistent session. */
export interface QueuedMessage {
  topic: string;
  payload: Buffer;
  /** Sent before and not acknowledged: redelivered with DUP 1. */
  dup: boolean;
  /** MQTT 5 Message Expiry: ms since the epoch, 0 = never. */
  expiresAt: number;
}

/** Format byte of a queue entry (bumped if the layout changes; unknown entries are skipped). */
export const ENTRY_FORMAT = 1;

/** A 1-byte format, a 4-byte length of JSON metadata, the metadata, then the payload verbatim. */
export function encodeEntry(m: QueuedMessage): Buffer {
  const meta = Buffer.from(JSON.stringify({ t: m.topic, d: m.dup ? 1 : 0, e: m.expiresAt }));
  const out = Buffer.allocUnsafe(5 + meta.length + m.payload.length);
  out[0] = ENTRY_FORMAT;
  out.writeUInt32BE(meta.length, 1);
  meta.copy(out, 5);
  out.set(m.payload, 5 + meta.length);
  return out;
}

/** Decodes an entry; undefined for anything `encodeEntry` did not write. */
export function decodeEntry(b: Buffer): QueuedMessage | undefined {
  if (b.length < 5 || b[0] !== ENTRY_FORMAT) return undefined;
  const n = b.readUInt32BE(1);
  if (5 + n > b.length) return undefined;
  try {
    const meta = JSON.parse(b.subarray(5, 5 + n).toString('utf8')) as { t?: unknown; d?: unknown; e?: unknown };
    if (typeof meta.t !== 'string') return undefined;
    return { topic: meta.t, payload: b.subarray(5 + n), dup: meta.d === 1, expiresAt: typeof meta.e === 'number' ? meta.e : 0 };
  } catch {
    return undefined;
  }
}

/** Parses one PUBLISH this bridge encoded (an in-flight delivery) back into a message. */
export function publishOf(bytes: Buffer, version: Version): IPublishPacket | undefined {
  const parser = mqttPacket.parser({ protocolVersion: version });
  let out: Packet | undefined;
  parser.on('packet', (p: Packet) => (out = p));
  parser.on('error', () => {});
  parser.parse(bytes);
  return out?.cmd === 'publish' ? out : undefined;
}

/**
 * Session expiry in ms for a CONNECT, 0 for a session that ends with the connection. MQTT 3.1.1:
 * clean session 0 gets `defaultS`; MQTT 5: the client's Session Expiry Interval, capped at `maxS`
 * (0xFFFFFFFF, "never", is capped too).
 */
export function sessionExpiryMs(version: Version, clean: boolean, requestedS: number | undefined, defaultS: number, maxS: number): number {
  if (version === 4) return clean ? 0 : Math.min(defaultS, maxS) * 1000;
  return Math.min(requestedS ?? 0, maxS) * 1000;
}

/** Absolute expiry of a message with MQTT 5 Message Expiry Interval `intervalS` (0 when absent). */
export function messageExpiresAt(intervalS: number | undefined, now: number): number {
  return intervalS ? now + intervalS * 1000 : 0;
}

/** Whole seconds left of a message expiring at `expiresAt` (at least 1), for the outbound property. */
export function remainingExpiryS(expiresAt: number, now: number): number {
  return Math.max(1, Math.ceil((expiresAt - now) / 1000));
}

export function isExpired(expiresAt: number | undefined, now: number): boolean {
  return !!expiresAt && expiresAt <= now;
}
