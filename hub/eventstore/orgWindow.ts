/**
 * How many appends one org may have in flight (in group-commit transactions not yet committed) while
 * another org is active (issue 9; pure logic, `groupCommit.ts` applies it).
 *
 * A flooding org that keeps hundreds of commands outstanding fills every batch, and the hub's one
 * event loop then spends each turn parsing, recording and answering hundreds of its commands: a
 * light org's frame or database result waits for that whole turn (measured: turns of ~17 ms at
 * 8-10 k commands/s on 2 cores, docs/benchmarks.md "Tenant fairness"). With a window of `window`
 * appends per org, one org's batches, and so the acks one database result releases into a turn,
 * stay that small, whatever it has outstanding; the rest wait in its own queue, parsed but not yet
 * recorded, and its client, waiting for acks, sends no faster than they come. The window applies only
 * while some other org has submitted within `activeMs`: an org alone on the node is not held back.
 * It is counted per unit of tier weight (groupCommit's `weightOf`), as batch shares are.
 */
export class OrgWindows {
  /** Last submit time per key (pruned to those within `activeMs`). */
  private readonly last = new Map<string, number>();
  /** Appends per key that were taken into a batch whose transaction has not finished yet. */
  private readonly open = new Map<string, number>();

  /** `window` 0 or Infinity: no window. */
  constructor(
    readonly window: number,
    readonly activeMs: number,
  ) {}

  get enabled(): boolean {
    return this.window > 0 && Number.isFinite(this.window);
  }

  submitted(key: string, now: number): void {
    if (this.enabled) this.last.set(key, now);
  }

  /** `n` appends of `key` were taken into a batch. */
  started(key: string, n: number): void {
    if (this.enabled) this.open.set(key, (this.open.get(key) ?? 0) + n);
  }

  /** `n` appends of `key` left flight (their transaction finished, or they were put back in the queue). */
  finished(key: string, n: number): void {
    if (!this.enabled) return;
    const left = (this.open.get(key) ?? 0) - n;
    if (left > 0) this.open.set(key, left);
    else this.open.delete(key);
  }

  /**
   * Appends `key` may still start now: Infinity unless another key submitted within `activeMs`;
   * then `window` x `weight` (the org's tier weight; not a positive finite number counts as 1) less
   * what it has in flight, so tiers keep their shares between flooding orgs.
   */
  room(key: string, now: number, weight = 1): number {
    if (!this.enabled || !this.othersActive(key, now)) return Infinity;
    const w = Number.isFinite(weight) && weight > 0 ? weight : 1;
    return Math.max(0, Math.floor(this.window * w) - (this.open.get(key) ?? 0));
  }

  private othersActive(key: string, now: number): boolean {
    let other = false;
    for (const [k, t] of this.last) {
      if (now - t > this.activeMs) this.last.delete(k);
      else if (k !== key) other = true;
    }
    return other;
  }
}
