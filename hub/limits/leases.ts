import type { BucketSpec, Grant } from './limiter.ts';

/** Where a lease gets its tokens: the cluster limiter, or the local fallback while Redis is down. */
export type LeaseSource = (key: string, want: number, minGrant: number, spec: BucketSpec) => Promise<Grant>;

/** How long tokens above one chunk may stay in a lease (the cluster bucket refills in about a second). */
export const HOLD_MS = 1000;

/**
 * This node's share of one cluster-wide bucket (a user's or an org's). The message path takes
 * tokens from `tokens`, in memory; the lease asks the cluster for the next chunk (about
 * ORGHUB_LIMITS_LEASE_MS worth of the rate) when it runs below half a chunk, so a sender under its
 * limit never waits for Redis. A sender over it is refused locally until the cluster bucket has
 * refilled `minGrant` tokens: one Redis round trip per quarter chunk, never one per message.
 */
export class Lease {
  private tokens = 0;
  private pending: Promise<void> | undefined;
  /** performance.now() before which the cluster bucket is known to be empty. */
  private retryAt = 0;
  private readonly low: number;
  private readonly minGrant: number;
  /**
   * Refusals since the last refill: the next refill asks for them too (up to the burst), so a burst
   * of arrivals that the cluster bucket could cover is served by the next lease instead of leaving
   * its tokens in Redis to overflow the bucket.
   */
  private missed = 0;
  /** performance.now() of the last grant that brought tokens. */
  private grantedAt = 0;
  lastUse = performance.now();

  constructor(
    readonly key: string,
    readonly spec: BucketSpec,
    private readonly chunk: number,
    private readonly source: LeaseSource,
  ) {
    this.low = chunk / 2;
    this.minGrant = Math.max(1, Math.floor(chunk / 4));
  }

  /** 0 when a token is here now, else ms until one may be (≥ 1). Starts a refill when low. */
  wait(now: number): number {
    this.lastUse = now;
    // Tokens held past HOLD_MS beyond one chunk are dropped: they were taken from the cluster bucket
    // long ago, and a bucket that refilled since would otherwise be spent on top of them (the window
    // bound becomes burst + held + rate x T instead of burst + rate x T). A chunk is always kept.
    if (this.tokens > this.chunk && now - this.grantedAt > HOLD_MS) this.tokens = this.chunk;
    if (this.tokens >= 1) {
      if (this.tokens < this.low && !this.pending && now >= this.retryAt) this.refill();
      return 0;
    }
    this.missed++;
    if (!this.pending && now >= this.retryAt) this.refill();
    return Math.max(1, Math.ceil(this.retryAt - now), this.pending ? Math.ceil(1000 / this.spec.rate) : 1);
  }

  /** Takes `n` tokens (the level may go below 0: debt that refills repay); call after `wait()` returned 0. */
  take(n = 1): void {
    this.tokens -= n;
  }

  /** Resolves once a refill that is under way (if any) has landed; starts one when empty. */
  settle(): Promise<void> {
    if (this.tokens < 1 && !this.pending && performance.now() >= this.retryAt) this.refill();
    return this.pending ?? Promise.resolve();
  }

  /** True while a refill is under way (a caller that can wait may `settle()` and try again). */
  get refilling(): boolean {
    return this.pending !== undefined;
  }

  private refill(): void {
    const want = Math.min(Math.max(1, Math.floor(this.spec.burst)), Math.max(this.chunk, this.missed));
    this.missed = 0;
    this.pending = this.source(this.key, want, this.minGrant, this.spec).then(
      (g) => {
        this.tokens += g.granted;
        if (g.granted > 0) this.grantedAt = performance.now();
        if (g.granted === 0) this.retryAt = performance.now() + g.retryAfterMs;
        this.pending = undefined;
      },
      () => {
        // The source already fell back or logged; try again a little later.
        this.retryAt = performance.now() + 100;
        this.pending = undefined;
      },
    );
  }
}

/**
 * Chunk size for a bucket: `leaseMs` worth of its rate, at least 1, at most half the burst. Half:
 * an org bucket holds only `orgBurstSeconds` (0.25 s by default), and with a long lease
 * (ORGHUB_LIMITS_LEASE_MS ≥ 250) a chunk as large as the bucket would let one node's lease hold
 * all of it while another node's refills find it empty.
 */
export function chunkFor(spec: BucketSpec, leaseMs: number): number {
  return Math.max(1, Math.floor(Math.min(spec.burst / 2, Math.ceil((spec.rate * leaseMs) / 1000))));
}
