/**
 * A local token bucket: `rate` tokens per second, at most `burst`, starting full. Refilled lazily
 * from a monotonic clock on each call, so an idle bucket costs nothing. A rate of 0 means
 * unlimited (every call succeeds).
 */
export class LocalBucket {
  private tokens: number;
  private last: number;

  constructor(
    readonly rate: number,
    readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = burst;
    this.last = now();
  }

  private refill(t = this.now()): void {
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) * this.rate) / 1000);
    this.last = t;
  }

  /** 0 when `n` tokens are there now, else the ms until they will be (always ≥ 1). `t`: the clock's now, if known. */
  wait(n = 1, t?: number): number {
    if (this.rate === 0) return 0;
    this.refill(t);
    if (this.tokens >= n) return 0;
    return Math.max(1, Math.ceil(((n - this.tokens) * 1000) / this.rate));
  }

  /** Takes `n` tokens; call after `wait()` returned 0 (the level may go slightly negative otherwise). */
  take(n = 1): void {
    if (this.rate !== 0) this.tokens -= n;
  }

  /** Takes up to `want` whole tokens if at least `min` are there; returns how many. */
  grant(want: number, min: number): number {
    if (this.rate === 0) return want;
    this.refill();
    if (this.tokens < min) return 0;
    const g = Math.min(want, Math.floor(this.tokens));
    this.tokens -= g;
    return g;
  }
}
