/**
 * How long a connection that keeps being refused is told to wait, and held (docs/protocol.md
 * "Rate limits"). Pure: the clock is passed in.
 *
 * The first refusal of a streak waits `max(bucket wait, BACKOFF_BASE_MS)`; each refusal after the
 * previous hold has ended doubles it, up to BACKOFF_CAP_MS (10, 20, 40, 50, 50 … ms). A refusal while a hold is still running
 * (a frame the transport had already read) gets the rest of that hold and does not double it. A
 * streak ends once the connection has gone BACKOFF_RESET_MS past its last hold without a refusal.
 * The transports stop reading the connection for the returned time, so a client that ignores
 * `retryAfterMs` costs one refusal per hold, not one per frame.
 */
export const BACKOFF_BASE_MS = 10;
/**
 * The longest hold. Short on purpose: a held connection's waiting frames run together when it
 * ends, and the tokens that accrued meanwhile let them through in one burst, so long holds turn
 * an org's steady rate into bursts that stall the others (A at 2000 commands/s, B's p99 once A's
 * own burst was spent: ~38 ms with 200 ms holds, 16-19 ms with 50 ms, B alone 12-17 ms).
 * Refusals stay rare: one per hold, at most 20/s per connection.
 */
export const BACKOFF_CAP_MS = 50;
export const BACKOFF_RESET_MS = 1000;
/**
 * Consecutive holds after which a connection counts as abusive (closed 4003 / MQTT 0x96 when
 * ORGHUB_LIMITS_ABUSE is on) however few refusals it got: 180 means about 9 s spent over its
 * limit without a second's break (10 + 20 + 40 ms, then 50 ms holds). Holds make refusals rare,
 * and an MQTT client held by TCP sends nothing the hub can count.
 */
export const ABUSE_STREAK = 180;

export class RefusalBackoff {
  /** Holds in the current streak (0: none). */
  streak = 0;
  /** Clock time (ms) at which the current hold ends. */
  until = 0;

  /** A refusal at `now` whose bucket frees a token in `bucketWait` ms: the retryAfterMs to answer. */
  refuse(now: number, bucketWait: number): number {
    if (now < this.until) return Math.max(1, Math.ceil(this.until - now));
    if (this.streak > 0 && now - this.until > BACKOFF_RESET_MS) this.streak = 0;
    this.streak++;
    const ms = Math.min(BACKOFF_CAP_MS, Math.max(bucketWait, BACKOFF_BASE_MS * 2 ** Math.min(this.streak - 1, 20)));
    this.until = now + ms;
    return ms;
  }

  /** True while the connection is in a hold (its transport should not read it). */
  holding(now: number): boolean {
    return now < this.until;
  }
}
