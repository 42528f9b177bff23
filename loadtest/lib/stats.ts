/** Percentile (nearest rank) of unsorted samples; NaN when empty. Sorts a copy. */
export function percentiles(xs: number[], ps: number[]): number[] {
  if (xs.length === 0) return ps.map(() => NaN);
  const s = Float64Array.from(xs).sort();
  return ps.map((p) => s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]);
}

export function median(xs: number[]): number {
  return percentiles(xs, [50])[0];
}

/** 1234567 -> "1.23 M", 12345 -> "12.3 k". */
export function si(n: number, digits = 3): string {
  if (!Number.isFinite(n)) return 'n/a';
  const a = Math.abs(n);
  if (a >= 1e6) return `${(n / 1e6).toPrecision(digits)} M`;
  if (a >= 1e3) return `${(n / 1e3).toPrecision(digits)} k`;
  return n.toPrecision(digits);
}

export function fixed(n: number, d = 2): string {
  return Number.isFinite(n) ? n.toFixed(d) : 'n/a';
}
