import type { IPublishPacket, Packet } from 'mqtt-packet';
import type { Version } from './outbound.ts';
import { createPacketParser } from './packetParser.ts';

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
export const ENTRY_FORMAT = 2;
/** The first format (JSON metadata), still read: a queue may hold entries an older node wrote. */
const ENTRY_FORMAT_JSON = 1;
/** Format 2: format, flags (bit 0 = DUP), expiresAt as a float64, topic length (u16), then topic and payload. */
const HEAD = 12;

/**
 * Encodes one queued message: a fixed 12-byte head, the topic in UTF-8 (as MQTT carries it) and
 * the payload verbatim, so that a resumed session turns it into a PUBLISH with two copies and no
 * parsing (`writeEntryPublish`).
 */
export function encodeEntry(m: QueuedMessage): Buffer {
  const topicLen = Buffer.byteLength(m.topic);
  const out = Buffer.allocUnsafe(HEAD + topicLen + m.payload.length);
  out[0] = ENTRY_FORMAT;
  out[1] = m.dup ? 1 : 0;
  out.writeDoubleBE(m.expiresAt, 2);
  out.writeUInt16BE(topicLen, 10);
  out.write(m.topic, HEAD, 'utf8');
  out.set(m.payload, HEAD + topicLen);
  return out;
}

/** Decodes an entry; undefined for anything `encodeEntry` (of this or the JSON format) did not write. */
export function decodeEntry(b: Buffer): QueuedMessage | undefined {
  if (b[0] === ENTRY_FORMAT) {
    if (b.length < HEAD) return undefined;
    const end = HEAD + b.readUInt16BE(10);
    if (end > b.length) return undefined;
    return { topic: b.toString('utf8', HEAD, end), payload: b.subarray(end), dup: (b[1] & 1) === 1, expiresAt: b.readDoubleBE(2) };
  }
  if (b.length < 5 || b[0] !== ENTRY_FORMAT_JSON) return undefined;
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

/** A queued entry as a QoS 1 PUBLISH for one client: the encoding (packet id 1 at `offset`) and the topic (for matching). */
export interface EntryPublish {
  topic: string;
  template: Buffer;
  offset: number;
}

/** Bytes of an MQTT Variable Byte Integer holding `n`. */
function varIntSize(n: number): number {
  return n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4;
}

function writeVarInt(out: Buffer, at: number, n: number): number {
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out[at++] = byte;
  } while (n > 0);
  return at;
}

/** The topic of a format-2 entry (checked by `entryPublishSize`). */
export function entryTopic(b: Buffer): string {
  return b.toString('utf8', HEAD, HEAD + b.readUInt16BE(10));
}

/** Whether two format-2 entries (checked by `entryPublishSize`) carry the same topic, compared as bytes. */
export function sameEntryTopic(a: Buffer, b: Buffer): boolean {
  const n = a.readUInt16BE(10);
  if (n !== b.readUInt16BE(10)) return false;
  // A loop, not Buffer#compare: topics are short, and compare's range checks cost more than the bytes.
  for (let i = HEAD + n - 1; i >= HEAD; i--) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Bytes of the PUBLISH `writeEntryPublish` builds from a format-2 entry; 'expired' when its
 * Message Expiry has passed; undefined for an entry of another format or a damaged one.
 */
export function entryPublishSize(b: Buffer, version: Version, now: number): number | 'expired' | undefined {
  if (b[0] !== ENTRY_FORMAT || b.length < HEAD) return undefined;
  const expiresAt = b.readDoubleBE(2);
  if (isExpired(expiresAt, now)) return 'expired';
  const topicEnd = HEAD + b.readUInt16BE(10);
  if (topicEnd > b.length) return undefined;
  const remaining = remainingLength(b, topicEnd, version, expiresAt, now);
  return 1 + varIntSize(remaining) + remaining;
}

function remainingLength(b: Buffer, topicEnd: number, version: Version, expiresAt: number, now: number): number {
  const propLen = version === 5 && expiresAt ? 5 : 0;
  const props = version === 5 ? varIntSize(propLen) + propLen : 0;
  return topicEnd - 10 + 2 + props + (b.length - topicEnd);
}

/**
 * Writes the QoS 1 PUBLISH (RETAIN 0, DUP from the entry, packet id 1) of a format-2 entry (one
 * `entryPublishSize` accepted, with the same `now`) into `out` at `at`, straight from its bytes:
 * the delivery path of a resumed session, where every queued message is encoded for one client
 * only. MQTT 5 carries the Message Expiry Interval left (`remainingExpiryS`) and no other
 * property. The bytes equal mqtt-packet's `generate` for the same packet (sessionCodec.test.ts
 * checks it). Returns the offset of its packet id in `out`. Entries of another format are served
 * by `decodeEntry` + `encodePublish`.
 */
export function writeEntryPublish(b: Buffer, version: Version, now: number, out: Buffer, at: number): number {
  const expiresAt = b.readDoubleBE(2);
  const topicEnd = HEAD + b.readUInt16BE(10);
  out[at] = 0x32 | ((b[1] & 1) << 3);
  at = writeVarInt(out, at + 1, remainingLength(b, topicEnd, version, expiresAt, now));
  // The topic (with its 2-byte length) byte by byte: shorter than what a `copy` call costs.
  for (let i = 10; i < topicEnd; i++) out[at++] = b[i];
  const offset = at;
  out[at++] = 0;
  out[at++] = 1;
  if (version === 5) {
    if (expiresAt) {
      out[at++] = 5;
      out[at++] = 0x02;
      out.writeUInt32BE(remainingExpiryS(expiresAt, now), at);
      at += 4;
    } else {
      out[at++] = 0;
    }
  }
  b.copy(out, at, topicEnd);
  return offset;
}

/** Parses one PUBLISH this bridge encoded (an in-flight delivery) back into a message. */
export function publishOf(bytes: Buffer, version: Version): IPublishPacket | undefined {
  const parser = createPacketParser(version);
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
