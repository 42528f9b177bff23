/**
 * Counts dropped audit events per org with a bounded set of labels, for `/metrics`: the listed
 * orgs (`_unauthenticated`) and the first `maxLabels` orgs that drop anything keep a label of their
 * own for the life of the process; every later org is counted under `other`. Labels never move, so
 * each series stays a monotonic counter, and a flood of random org ids cannot grow the metrics.
 */
export class DropCounter {
  private readonly counts = new Map<string, number>();
  private named = 0;
  total = 0;

  constructor(
    private readonly always: readonly string[] = [],
    private readonly maxLabels = 20,
  ) {}

  /** The label an org's drops are counted under. */
  label(org: string): string {
    if (this.counts.has(org) || this.always.includes(org)) return org;
    if (this.named < this.maxLabels) {
      this.named++;
      return org;
    }
    return OTHER;
  }

  add(org: string, n = 1): void {
    const l = this.label(org);
    this.counts.set(l, (this.counts.get(l) ?? 0) + n);
    this.total += n;
  }

  byLabel(): Record<string, number> {
    return Object.fromEntries(this.counts);
  }
}

/** The label of every org past the first `maxLabels`. */
export const OTHER = 'other';
