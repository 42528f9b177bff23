/**
 * Cumulative latency buckets kept as plain numbers on the hot path (no prom-client call per
 * observation, no allocation); `/metrics` reads a snapshot at scrape time (hub/metrics.ts).
 * Bounds are in seconds, ascending; values above the last bound count only in `+Inf`.
 */
export interface LatencySnapshot {
  /** Upper bounds in seconds, ascending. */
  readonly bounds: readonly number[];
  /** Cumulative counts per bound (Prometheus `le` semantics), same length as `bounds`. */
  readonly cumulative: readonly number[];
  readonly count: number;
  readonly sum: number;
}

/** 0.5 ms to 10 s: fan-out sits in the low milliseconds, appends in the group-commit window and fsync. */
export const LATENCY_BOUNDS_SECONDS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class LatencyHistogram {
  private readonly counts: number[];
  private n = 0;
  private total = 0;

  constructor(readonly bounds: readonly number[] = LATENCY_BOUNDS_SECONDS) {
    for (let i = 1; i < bounds.length; i++) if (!(bounds[i] > bounds[i - 1])) throw new RangeError('latency bounds must ascend');
    this.counts = new Array(bounds.length + 1).fill(0);
  }

  /** Records one value in seconds. Negative values (clock skew between nodes) count as 0. */
  observe(seconds: number): void {
    const v = seconds > 0 ? seconds : 0;
    let i = 0;
    while (i < this.bounds.length && v > this.bounds[i]) i++;
    this.counts[i]++;
    this.n++;
    this.total += v;
  }

  snapshot(): LatencySnapshot {
    const cumulative: number[] = [];
    let acc = 0;
    for (let i = 0; i < this.bounds.length; i++) cumulative.push((acc += this.counts[i]));
    return { bounds: this.bounds, cumulative, count: this.n, sum: this.total };
  }
}

/**
 * Maps an org id to a bounded metric label: the org itself when it is on the allow-list, else
 * `_other`. Unbounded label values (one series per tenant) would grow Prometheus without limit.
 */
export function orgLabeler(allowList: readonly string[]): (org: string) => string {
  const allowed = new Set(allowList.filter((o) => o.length > 0));
  return (org) => (allowed.has(org) ? org : OTHER_ORGS);
}

/** The label of every org not on ORGHUB_METRICS_ORGS (org ids starting with `_` are reserved). */
export const OTHER_ORGS = '_other';
