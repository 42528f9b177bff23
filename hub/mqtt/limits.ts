import { sanitizeUntrusted } from '../core/text.ts';

/**
 * Per-connection token bucket for inbound PUBLISH packets. `rate` tokens per second, burst of
 * `2 * rate`; a rate of 0 disables the limit. Refilled lazily from a monotonic clock, so an idle
 * connection costs nothing.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private readonly burst: number;

  constructor(
    private readonly rate: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.burst = rate * 2;
    this.tokens = this.burst;
    this.last = now();
  }

  /** Takes one token; false when the bucket is empty (the caller decides what to do). */
  take(): boolean {
    if (this.rate === 0) return true;
    // Refill on every take: refilling only once empty credited the idle time before a full
    // bucket was drained a second time, so a burst could reach twice `burst`.
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) * this.rate) / 1000);
    this.last = t;
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }
}

/** Limits of one MQTT connection, from the hub config (docs/configuration.md). */
export interface MqttLimits {
  /** Largest inbound packet in bytes (fixed header included). */
  maxPacket: number;
  /** Outbound QoS 1 messages awaiting PUBACK; further ones queue, up to `maxQueued`. */
  maxInflight: number;
  /** Outbound QoS 1 messages queued behind a full in-flight window before the client is dropped as too slow. */
  maxQueued: number;
  /** Inbound PUBLISH per second (0 = unlimited). */
  rate: number;
  maxSubscriptions: number;
  /** Bytes buffered for a slow socket before it is closed. */
  maxBackpressure: number;
  /** Milliseconds a fresh connection may take to send CONNECT. */
  connectTimeoutMs: number;
}

/**
 * True when the packet being parsed is over `max` bytes: by its declared remaining length, or by
 * the bytes buffered for it (8 bytes of slack for the fixed header). Checked before the body is
 * buffered in full.
 */
export function overPacketLimit(declaredLength: number, bufferedBytes: number, max: number): boolean {
  return declaredLength > max || bufferedBytes > max + 8;
}

/** True once a connection with keepalive `keepaliveMs` (0 = off) has been silent for 1.5 × it (MQTT §3.1.2.10). */
export function keepaliveExpired(keepaliveMs: number, lastSeen: number, now: number): boolean {
  return keepaliveMs > 0 && now - lastSeen > keepaliveMs * 1.5;
}

/**
 * Makes client-chosen strings (client ids, user names, topics) safe before they reach logs and
 * audit data: clipped to `n` code points (a surrogate pair is never cut), control characters
 * escaped, lone surrogates replaced (see hub/core/text.ts).
 */
export function clip(s: string | undefined, n = 128): string | undefined {
  return sanitizeUntrusted(s, n);
}
