/**
 * Keeps a connection's packet handling in arrival order when some handlers wait (Redis, the event
 * store): a task runs at once when nothing is pending, and is chained behind the pending ones
 * otherwise. No I/O of its own; the session supplies what happens on an error or an overflow.
 */
export class SerialQueue {
  private tail: Promise<void> | null = null;
  private queued = 0;

  constructor(
    /** Tasks that may wait behind a pending one; one more calls `onOverflow` instead of queuing. */
    private readonly maxPending: number,
    private readonly hooks: {
      /** A task threw or rejected. */
      onError(err: unknown): void;
      onOverflow(): void;
      /** Queued tasks are skipped once this is true. */
      stopped(): boolean;
    },
  ) {}

  /** True when nothing is pending, so a task may run in place (the hot path, without a closure). */
  get idle(): boolean {
    return this.tail === null;
  }

  /** Runs `fn` after every earlier task has finished: synchronously when idle, chained otherwise. */
  run(fn: () => void | Promise<void>): void {
    if (this.tail === null) {
      let r: void | Promise<void>;
      try {
        r = fn();
      } catch (err) {
        return this.hooks.onError(err);
      }
      if (r instanceof Promise) this.track(r);
      return;
    }
    if (++this.queued > this.maxPending) return this.hooks.onOverflow();
    this.track(
      this.tail.then(() => {
        this.queued--;
        if (!this.hooks.stopped()) return fn();
      }),
    );
  }

  /** Makes later tasks wait for `p` (which a task started in place returned). */
  track(p: Promise<void>): void {
    const t: Promise<void> = p.catch((err) => this.hooks.onError(err));
    this.tail = t;
    void t.then(() => {
      if (this.tail === t) this.tail = null;
    });
  }
}
