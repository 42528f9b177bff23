import type { ContentType } from '../bus/bus.ts';

/** One retained message: the exact payload bytes and what is needed to redeliver them. */
export interface RetainedMessage {
  topic: string;
  payload: Buffer;
  contentType: ContentType;
  /** QoS it was published with (0 or 1; QoS 2 is stored as 1, the most the bridge delivers). */
  qos: 0 | 1;
  from?: string;
  ts: number;
}

/**
 * Retained messages per org, shared by every hub node (so not in process memory). Topics are
 * org-relative and valid; the org comes from the verified token only.
 */
export interface RetainedStore {
  /**
   * Stores (or, for an empty payload, deletes) the retained message of `topic`. Resolves false,
   * storing nothing, when `topic` is new and the org already holds its maximum of retained topics,
   * or when the value would take the org past its retained bytes (hub/limits tier `retainedBytes`).
   * Rejects when the store is down.
   */
  set(org: string, msg: RetainedMessage): Promise<boolean>;
  /** Every retained message of the org whose topic matches `pattern` (hub semantics, `$` rule included). */
  match(org: string, pattern: string): Promise<RetainedMessage[]>;
  /** The same, read `pageSize` messages at a time (the caller waits for its socket between pages). */
  matchPages?(org: string, pattern: string, pageSize: number): AsyncIterable<RetainedMessage[]>;
  /** Readiness: true once the store answers. */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * Encoding of one hash value: a 1-byte format version, a 4-byte big-endian length of a JSON
 * metadata object, the metadata, then the payload bytes verbatim (binary-safe, no base64).
 */
export const RETAINED_FORMAT = 1;

export function encodeRetained(m: RetainedMessage): Buffer {
  const meta = Buffer.from(JSON.stringify({ ct: m.contentType, q: m.qos, f: m.from, ts: m.ts }));
  const out = Buffer.allocUnsafe(5 + meta.length + m.payload.length);
  out[0] = RETAINED_FORMAT;
  out.writeUInt32BE(meta.length, 1);
  meta.copy(out, 5);
  out.set(m.payload, 5 + meta.length);
  return out;
}

/** Decodes a hash value; undefined for anything not written by `encodeRetained`. */
export function decodeRetained(topic: string, v: Buffer): RetainedMessage | undefined {
  if (v.length < 5 || v[0] !== RETAINED_FORMAT) return undefined;
  const n = v.readUInt32BE(1);
  if (5 + n > v.length) return undefined;
  try {
    const meta = JSON.parse(v.subarray(5, 5 + n).toString('utf8')) as { ct?: string; q?: number; f?: string; ts?: number };
    return {
      topic,
      payload: v.subarray(5 + n),
      contentType: meta.ct === 'json' ? 'json' : 'bytes',
      qos: meta.q === 1 ? 1 : 0,
      from: typeof meta.f === 'string' ? meta.f : undefined,
      ts: typeof meta.ts === 'number' ? meta.ts : 0,
    };
  } catch {
    return undefined;
  }
}
