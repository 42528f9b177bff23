/**
 * Group commit: requests that arrive within `windowMs` of the first queued one (or until `maxBatch`
 * are queued) are handed to `flush` together, so that they share one transaction and one fsync.
 * Up to `concurrency` batches are in flight at once (each on its own connection); while all are busy
 * new requests keep queueing, which makes batches grow exactly when load does.
 *
 * `flush` returns one outcome per request, in order: a value or an Error. A rejected flush fails
 * every request of that batch (the transaction did not commit).
 */
export interface GroupCommitOptions<I, R> {
  windowMs: number;
  maxBatch: number;
  concurrency: number;
  flush: (items: I[]) => Promise<Array<R | Error>>;
  /**
   * Requests with the same conflict key never share a batch: the later one waits for the next
   * (used for idempotency keys, so a retry sees the original as already recorded).
   */
  conflictKeys?: (item: I) => readonly string[];
  /**
   * When set, a queue of at least 2 x `splitMin` requests is split over the idle slots (up to one
   * batch per `splitMin` requests), so that several connections (and cores) work on it at once.
   * Requests with the same partition key always stay in one batch (for the event store: the org,
   * which keeps a stream's appends of one window in one transaction, in order).
   */
  partitionKey?: (item: I) => string;
  /** Smallest share of a split; default 32. */
  splitMin?: number;
}

export interface GroupCommit<I, R> {
  submit(item: I): Promise<R>;
  /** Requests queued or in flight. */
  readonly pending: number;
  /** Since creation: requests flushed, batches flushed, batches whose flush rejected as a whole. */
  readonly totals: { readonly items: number; readonly batches: number; readonly failedBatches: number };
  /** Flushes what is queued and waits for every batch in flight. */
  drain(): Promise<void>;
}

interface Pending<I, R> {
  item: I;
  resolve: (r: R) => void;
  reject: (e: unknown) => void;
}

export function createGroupCommit<I, R>(opts: GroupCommitOptions<I, R>): GroupCommit<I, R> {
  if (!(opts.windowMs >= 0)) throw new RangeError('windowMs must be >= 0');
  if (!(opts.maxBatch >= 1)) throw new RangeError('maxBatch must be >= 1');
  if (!(opts.concurrency >= 1)) throw new RangeError('concurrency must be >= 1');

  let queue: Pending<I, R>[] = [];
  const totals = { items: 0, batches: 0, failedBatches: 0 };
  let inFlight = 0;
  let inFlightItems = 0;
  let timer: NodeJS.Timeout | undefined;
  let windowOpen = false;
  const idle: Array<() => void> = [];

  function schedule(): void {
    if (queue.length === 0 || inFlight >= opts.concurrency) return;
    if (queue.length >= opts.maxBatch) {
      if (timer) clearTimeout(timer);
      timer = undefined;
      windowOpen = false;
      run();
      return;
    }
    if (windowOpen) return;
    windowOpen = true;
    timer = setTimeout(() => {
      timer = undefined;
      windowOpen = false;
      run();
    }, opts.windowMs);
  }

  function take(max: number): Pending<I, R>[] {
    if (!opts.conflictKeys) {
      const batch = queue.slice(0, max);
      queue = queue.slice(batch.length);
      return batch;
    }
    const seen = new Set<string>();
    const batch: Pending<I, R>[] = [];
    const rest: Pending<I, R>[] = [];
    for (const p of queue) {
      if (batch.length >= max) {
        rest.push(p);
        continue;
      }
      const keys = opts.conflictKeys(p.item);
      if (keys.some((k) => seen.has(k))) {
        rest.push(p);
        continue;
      }
      for (const k of keys) seen.add(k);
      batch.push(p);
    }
    queue = rest;
    return batch;
  }

  const splitMin = Math.max(1, opts.splitMin ?? 32);

  /** Splits `items` into at most `parts` batches, keeping each partition key in one batch. */
  function split(items: Pending<I, R>[], parts: number): Pending<I, R>[][] {
    const groups = new Map<string, Pending<I, R>[]>();
    for (const p of items) {
      const k = opts.partitionKey!(p.item);
      let g = groups.get(k);
      if (!g) groups.set(k, (g = []));
      g.push(p);
    }
    if (groups.size < 2) return [items];
    const bins: Pending<I, R>[][] = Array.from({ length: Math.min(parts, groups.size) }, () => []);
    // largest groups first, each into the emptiest bin; a group keeps its arrival order
    for (const g of [...groups.values()].sort((a, b) => b.length - a.length)) {
      let min = bins[0];
      for (const b of bins) if (b.length < min.length) min = b;
      for (const p of g) min.push(p);
    }
    return bins.filter((b) => b.length > 0);
  }

  function run(): void {
    if (queue.length === 0 || inFlight >= opts.concurrency) return;
    const free = opts.concurrency - inFlight;
    const parts = opts.partitionKey ? Math.min(free, Math.floor(queue.length / splitMin)) : 1;
    if (parts < 2) {
      void runBatch(take(opts.maxBatch));
      return;
    }
    const batches = split(take(opts.maxBatch * parts), parts);
    // A bin over maxBatch (one big partition) gives its tail back, in order, to the front of the queue.
    const back: Pending<I, R>[] = [];
    for (const b of batches) if (b.length > opts.maxBatch) back.push(...b.splice(opts.maxBatch));
    if (back.length) queue = back.concat(queue);
    for (const batch of batches) void runBatch(batch);
  }

  async function runBatch(batch: Pending<I, R>[]): Promise<void> {
    inFlight++;
    inFlightItems += batch.length;
    totals.items += batch.length;
    totals.batches++;
    try {
      const outcomes = await opts.flush(batch.map((p) => p.item));
      batch.forEach((p, i) => {
        const o = outcomes[i];
        if (o instanceof Error) p.reject(o);
        else if (o === undefined) p.reject(new Error('group commit: flush returned no outcome'));
        else p.resolve(o);
      });
    } catch (err) {
      totals.failedBatches++;
      for (const p of batch) p.reject(err);
    } finally {
      inFlight--;
      inFlightItems -= batch.length;
      // Whatever queued meanwhile has already waited for a free slot: send it without a new window.
      if (queue.length > 0) {
        if (timer) clearTimeout(timer);
        timer = undefined;
        windowOpen = false;
        run();
      }
      if (inFlight === 0 && queue.length === 0) for (const f of idle.splice(0)) f();
    }
  }

  return {
    submit(item: I): Promise<R> {
      return new Promise<R>((resolve, reject) => {
        queue.push({ item, resolve, reject });
        schedule();
      });
    },
    get pending() {
      return queue.length + inFlightItems;
    },
    totals,
    drain(): Promise<void> {
      if (inFlight === 0 && queue.length === 0) return Promise.resolve();
      if (timer) {
        clearTimeout(timer);
        timer = undefined;
        windowOpen = false;
        run();
      }
      return new Promise((resolve) => idle.push(resolve));
    },
  };
}
