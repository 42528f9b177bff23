import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Logger } from '../log.ts';
import type { Bus, ControlOptions } from './bus.ts';

/** How far a control message's timestamp may be from this node's clock (replay window). */
export const CONTROL_MAX_SKEW_MS = 60_000;
const MAC_BYTES = 32;
const TS_BYTES = 8;

function mac(secret: Buffer, kind: string, ts: Buffer, payload: Uint8Array): Buffer {
  return createHmac('sha256', secret).update(kind).update('\u0000').update(ts).update(payload).digest();
}

/**
 * Frames a control payload as `ts(8 bytes, ms) | HMAC-SHA-256(secret, kind \0 ts payload)(32) | payload`.
 * The kind is inside the MAC, so a genuine takeover notice cannot be replayed as a revocation.
 */
export function signControl(secret: Buffer, kind: string, payload: Uint8Array, nowMs = Date.now()): Buffer {
  const ts = Buffer.alloc(TS_BYTES);
  ts.writeBigUInt64BE(BigInt(Math.floor(nowMs)));
  return Buffer.concat([ts, mac(secret, kind, ts, payload), payload]);
}

/** The payload of an authentic, fresh control message, or undefined (forged, altered, stale, or short). */
export function openControl(secret: Buffer, kind: string, framed: Uint8Array, nowMs = Date.now()): Uint8Array | undefined {
  if (framed.length < TS_BYTES + MAC_BYTES) return undefined;
  const buf = Buffer.from(framed.buffer, framed.byteOffset, framed.byteLength);
  const ts = buf.subarray(0, TS_BYTES);
  const given = buf.subarray(TS_BYTES, TS_BYTES + MAC_BYTES);
  const payload = buf.subarray(TS_BYTES + MAC_BYTES);
  if (!timingSafeEqual(given, mac(secret, kind, ts, payload))) return undefined;
  if (Math.abs(Number(ts.readBigUInt64BE()) - nowMs) > CONTROL_MAX_SKEW_MS) return undefined;
  return payload;
}

/** Frames signed here that are remembered for `othersOnly` subscriptions (their echo comes back within milliseconds). */
export const OWN_FRAMES_KEPT = 1024;

/**
 * The signatures of the last `max` frames this node signed. A frame received with one of them is
 * this node's own echo (an HMAC names its bytes), so an `othersOnly` subscription drops it before
 * the HMAC is computed again and the payload decoded. Dropping is all a match may do: a forger who
 * copies one of these signatures onto other bytes is dropped too, never let through.
 */
export class OwnFrames {
  private readonly keys = new Set<string>();
  private readonly order: string[] = [];
  private next = 0;

  constructor(private readonly max = OWN_FRAMES_KEPT) {}

  /** Remembers a frame made by `signControl`; the oldest is forgotten past `max`. */
  add(framed: Buffer): void {
    const k = framed.toString('latin1', TS_BYTES, TS_BYTES + MAC_BYTES);
    if (this.order.length < this.max) this.order.push(k);
    else {
      this.keys.delete(this.order[this.next]);
      this.order[this.next] = k;
      this.next = (this.next + 1) % this.max;
    }
    this.keys.add(k);
  }

  /** The frame carries a signature made here (recently). */
  has(framed: Uint8Array): boolean {
    if (framed.length < TS_BYTES + MAC_BYTES || this.keys.size === 0) return false;
    return this.keys.has(Buffer.from(framed.buffer, framed.byteOffset, framed.byteLength).toString('latin1', TS_BYTES, TS_BYTES + MAC_BYTES));
  }
}

/**
 * Authenticates every `orghub.ctl.*` message of a bus with ORGHUB_CLUSTER_SECRET: NATS itself lets
 * any connected client publish there, so without this a backend could forge a takeover or a
 * revocation. Messages that fail the check are counted and dropped before any handler sees them.
 * Client topics are untouched (they live under `hub.<org>.` and carry no authority).
 */
export function withSignedControl<B extends Bus>(bus: B, secret: string, log: Logger): B & { readonly rejectedControl: number } {
  const key = Buffer.from(secret, 'utf8');
  let rejected = 0;
  let lastLog = 0;
  const own = new OwnFrames();
  return Object.assign(Object.create(bus) as B, {
    publishControl(kind: string, payload: Uint8Array) {
      const framed = signControl(key, kind, payload);
      bus.publishControl(kind, framed);
      own.add(framed);
    },
    subscribeControl(kind: string, handler: (payload: Uint8Array) => void, opts?: ControlOptions) {
      const othersOnly = !!opts?.othersOnly;
      return bus.subscribeControl(kind, (framed) => {
        if (othersOnly && own.has(framed)) return;
        const payload = openControl(key, kind, framed);
        if (payload) return handler(payload);
        rejected++;
        const now = Date.now();
        if (now - lastLog > 5000) {
          lastLog = now;
          log.warn({ kind, rejected }, 'control message with a bad or stale signature dropped (ORGHUB_CLUSTER_SECRET differs, or a forgery)');
        }
      });
    },
    get rejectedControl() {
      return rejected;
    },
  });
}
