/**
 * Group commit: requests that arrive within `windowMs` of the first queued one (or until `maxBatch`
 * are queued) are handed to `flush` together, so that they share one transaction and one fsync.
 * Up to `concurrency` batches are in flight at once (each on its own connection); while all are busy
 * new requests keep queueing, which makes batches grow exactly when load does.
 *
 * `flush` returns one outcome per request, in order: a value or an Error. A rejected flush fails
 * every request of that batch (the transaction did not commit).
 *
 * Fairness: the queue is one FIFO per partition key (org). A batch is filled round-robin across
 * keys, each getting a share in proportion to its weight (`weightOf`, the org's tier; equal by
 * default; what a short queue leaves goes to the others), and one key may
 * hold at most `maxSlotsPerKey` of the in-flight batches, so one org's flood cannot make another
 * org's requests wait behind it. Both the whole queue and each key's share of it are bounded.
 * While another key is active, a key may have at most its window of requests in flight
 * (`windowPerKey`, orgWindow.ts), and a flushed batch's callers are answered `settleSlice` per
 * event-loop turn, light keys first: a flood's batches, and the work each result releases into one
 * turn, stay small, so another org's frames and results do not wait behind them.
 */
import { fairShares, settleOrder, type Waiting } from './fairShare.ts';
import { performance } from 'node:perf_hooks';
import { OrgWindows } from './orgWindow.ts';

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
  /** Most requests queued (not yet in flight); past it `submit` rejects with `overloaded('queue')`. Default unbounded. */
  maxQueue?: number;
  /** Most requests queued per partition key (one org's share); default `maxQueue`. */
  maxQueuePerKey?: number;
  /**
   * Most in-flight batches that may hold one partition key; default `concurrency - 1` (at least 1)
   * when `partitionKey` is set, so a flooding org always leaves a slot, and a short batch, for the
   * others. Without `partitionKey`: `concurrency`.
   */
  maxSlotsPerKey?: number;
  /**
   * A key's share of a batch relative to the others' (the org's tier weight); read at every batch,
   * so a changed tier applies at once. Default 1 for every key (plain round-robin).
   */
  weightOf?: (key: string) => number;
  /**
   * Most callers answered per event-loop turn once a batch is flushed (the orgs with the fewest
   * requests in the batch first); the rest wait for the next turns (setImmediate), so one org's big
   * batch does not hold the loop while its acks go out. Default: the whole batch at once.
   */
  settleSlice?: number;
  /**
   * Most requests one partition key may have in flight (in batches being flushed), per unit of its
   * weight, while another key has submitted within `activeMs` (orgWindow.ts); the rest wait in its
   * queue. Default: no window.
   */
  windowPerKey?: number;
  /** How recently another key must have submitted for `windowPerKey` to apply; default 1000 ms. */
  activeMs?: number;
  /** The error a refused `submit` rejects with (the queue, or the key's share of it, is full). */
  overloaded?: (scope: 'queue' | 'key', key: string) => Error;
}

export interface GroupCommit<I, R> {
  submit(item: I): Promise<R>;
  /** Requests queued or in flight. */
  readonly pending: number;
  /** Since creation: requests flushed, batches flushed, batches whose flush rejected as a whole, submits refused as overloaded. */
  readonly totals: { readonly items: number; readonly batches: number; readonly failedBatches: number; readonly overloaded: number };
  /** Flushes what is queued and waits for every batch in flight. */
  drain(): Promise<void>;
}

interface Pending<I, R> {
  item: I;
  key: string;
  seq: number;
  resolve: (r: R) => void;
  reject: (e: unknown) => void;
}

export function createGroupCommit<I, R>(opts: GroupCommitOptions<I, R>): GroupCommit<I, R> {
  if (!(opts.windowMs >= 0)) throw new RangeError('windowMs must be >= 0');
  if (!(opts.maxBatch >= 1)) throw new RangeError('maxBatch must be >= 1');
  if (!(opts.concurrency >= 1)) throw new RangeError('concurrency must be >= 1');
  const maxQueue = opts.maxQueue ?? Infinity;
  const maxQueuePerKey = opts.maxQueuePerKey ?? maxQueue;
  if (!(maxQueue >= 1) || !(maxQueuePerKey >= 1)) throw new RangeError('maxQueue and maxQueuePerKey must be >= 1');
  const maxSlotsPerKey = opts.maxSlotsPerKey ?? (opts.partitionKey ? Math.max(1, opts.concurrency - 1) : opts.concurrency);
  if (!(maxSlotsPerKey >= 1)) throw new RangeError('maxSlotsPerKey must be >= 1');
  const weightOf = opts.weightOf ?? (() => 1);
  const settleSlice = opts.settleSlice ?? Infinity;
  const windows = new OrgWindows(opts.windowPerKey ?? Infinity, opts.activeMs ?? 1000);
  if (!(windows.window >= 1) || !(windows.activeMs >= 0)) throw new RangeError('windowPerKey must be >= 1 and activeMs >= 0');
  if (!(settleSlice >= 1)) throw new RangeError('settleSlice must be >= 1');
  const overloaded = opts.overloaded ?? ((scope, key) => new Error(scope === 'queue' ? 'group commit: queue full' : `group commit: queue full for ${key}`));

  /** One FIFO per partition key; a key is present only while its queue is non-empty. */
  const queues = new Map<string, Pending<I, R>[]>();
  let queued = 0;
  let seq = 0;
  let rr = 0;
  /** In-flight batches holding each key. */
  const slots = new Map<string, number>();
  const totals = { items: 0, batches: 0, failedBatches: 0, overloaded: 0 };
  let inFlight = 0;
  let inFlightItems = 0;
  /** Flushed batches whose callers are still being answered (settleSlice). */
  let settling = 0;
  let timer: NodeJS.Timeout | undefined;
  let windowOpen = false;
  const idle: Array<() => void> = [];

  function schedule(): void {
    if (queued === 0 || inFlight >= opts.concurrency) return;
    if (queued >= opts.maxBatch) {
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

  /** How many requests each eligible key gives to a batch of `max`: shares by weight, rotating start (fairShare.ts). */
  function allocate(max: number): Map<string, number> {
    const waiting: Waiting[] = [];
    const now = windows.enabled ? performance.now() : 0;
    for (const [key, q] of queues) {
      if ((slots.get(key) ?? 0) >= maxSlotsPerKey) continue;
      const weight = weightOf(key);
      const room = windows.enabled ? windows.room(key, now, weight) : Infinity;
      if (room > 0) waiting.push({ key, queued: Math.min(q.length, room), weight });
    }
    return fairShares(waiting, max, rr++);
  }

  function take(max: number): Pending<I, R>[] {
    const batch: Pending<I, R>[] = [];
    const seen = opts.conflictKeys ? new Set<string>() : undefined;
    for (const [k, n] of allocate(max)) {
      const q = queues.get(k)!;
      if (!seen) {
        for (const p of q.splice(0, n)) batch.push(p);
      } else {
        // A request whose conflict key is already in this batch waits for the next one, keeping its place.
        const rest: Pending<I, R>[] = [];
        let got = 0;
        let i = 0;
        for (; i < q.length && got < n; i++) {
          const p = q[i];
          const keys = opts.conflictKeys!(p.item);
          if (keys.some((c) => seen.has(c))) {
            rest.push(p);
            continue;
          }
          for (const c of keys) seen.add(c);
          batch.push(p);
          got++;
        }
        queues.set(k, i < q.length ? rest.concat(q.slice(i)) : rest);
      }
      if (queues.get(k)!.length === 0) queues.delete(k);
    }
    queued -= batch.length;
    if (windows.enabled) for (const p of batch) windows.started(p.key, 1);
    // Arrival order inside a batch, as before fairness (the store keeps each stream's order by it).
    return batch.sort((a, b) => a.seq - b.seq);
  }

  /** Puts requests back at the front of their keys' queues, in order. */
  function giveBack(items: Pending<I, R>[]): void {
    const byKey = new Map<string, Pending<I, R>[]>();
    for (const p of items) {
      windows.finished(p.key, 1);
      let g = byKey.get(p.key);
      if (!g) byKey.set(p.key, (g = []));
      g.push(p);
    }
    for (const [k, g] of byKey) queues.set(k, g.concat(queues.get(k) ?? []));
    queued += items.length;
  }

  const splitMin = Math.max(1, opts.splitMin ?? 32);

  /** Splits `items` into at most `parts` batches, keeping each partition key in one batch. */
  function split(items: Pending<I, R>[], parts: number): Pending<I, R>[][] {
    const groups = new Map<string, Pending<I, R>[]>();
    for (const p of items) {
      let g = groups.get(p.key);
      if (!g) groups.set(p.key, (g = []));
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
    return bins.filter((b) => b.length > 0).map((b) => b.sort((x, y) => x.seq - y.seq));
  }

  function run(): void {
    if (queued === 0 || inFlight >= opts.concurrency) return;
    const free = opts.concurrency - inFlight;
    const parts = opts.partitionKey ? Math.min(free, Math.floor(queued / splitMin)) : 1;
    if (parts < 2) {
      const batch = take(opts.maxBatch);
      if (batch.length) void runBatch(batch);
      return;
    }
    const batches = split(take(opts.maxBatch * parts), parts);
    // A bin over maxBatch (one big partition) gives its tail back, in order, to the front of the queue.
    const back: Pending<I, R>[] = [];
    for (const b of batches) if (b.length > opts.maxBatch) back.push(...b.splice(opts.maxBatch));
    if (back.length) giveBack(back);
    for (const batch of batches) if (batch.length) void runBatch(batch);
  }

  async function runBatch(batch: Pending<I, R>[]): Promise<void> {
    const keys = new Set(batch.map((p) => p.key));
    for (const k of keys) slots.set(k, (slots.get(k) ?? 0) + 1);
    inFlight++;
    inFlightItems += batch.length;
    totals.items += batch.length;
    totals.batches++;
    let outcomes: Array<R | Error> | undefined;
    let failure: unknown;
    try {
      outcomes = await opts.flush(batch.map((p) => p.item));
    } catch (err) {
      totals.failedBatches++;
      failure = err;
    }
    inFlight--;
    if (windows.enabled) for (const p of batch) windows.finished(p.key, 1);
    for (const k of keys) {
      const n = slots.get(k)! - 1;
      if (n === 0) slots.delete(k);
      else slots.set(k, n);
    }
    // Whatever queued meanwhile has already waited for a free slot: send it without a new window
    // (before this batch's callers are answered, so the database works while they are).
    if (queued > 0) {
      if (timer) clearTimeout(timer);
      timer = undefined;
      windowOpen = false;
      run();
    }
    settling++;
    try {
      await settle(batch, outcomes, failure);
    } finally {
      settling--;
      if (inFlight === 0 && queued === 0 && settling === 0) for (const f of idle.splice(0)) f();
    }
  }

  /**
   * Answers a flushed batch's callers: the orgs with the fewest requests in it first, and at most
   * `settleSlice` per macrotask, so a big batch's continuations (acks, publishes) are spread over
   * event-loop turns and another org's I/O (its frames, its own batch's result) runs in between.
   */
  async function settle(batch: Pending<I, R>[], outcomes: Array<R | Error> | undefined, failure: unknown): Promise<void> {
    const order = batch.length > settleSlice ? settleOrder(batch.map((p) => p.key)) : undefined;
    for (let done = 0; done < batch.length; ) {
      if (done > 0) await new Promise<void>((r) => setImmediate(r));
      const from = done;
      const end = Math.min(batch.length, done + settleSlice);
      for (; done < end; done++) {
        const i = order ? order[done] : done;
        const p = batch[i];
        if (!outcomes) {
          p.reject(failure);
          continue;
        }
        const o = outcomes[i];
        if (o instanceof Error) p.reject(o);
        else if (o === undefined) p.reject(new Error('group commit: flush returned no outcome'));
        else p.resolve(o);
      }
      inFlightItems -= end - from;
    }
  }

  return {
    submit(item: I): Promise<R> {
      const key = opts.partitionKey ? opts.partitionKey(item) : '';
      const q = queues.get(key);
      if (queued >= maxQueue || (q?.length ?? 0) >= maxQueuePerKey) {
        totals.overloaded++;
        return Promise.reject(overloaded(queued >= maxQueue ? 'queue' : 'key', key));
      }
      return new Promise<R>((resolve, reject) => {
        const p = { item, key, seq: seq++, resolve, reject };
        if (q) q.push(p);
        else queues.set(key, [p]);
        queued++;
        windows.submitted(key, performance.now());
        schedule();
      });
    },
    get pending() {
      return queued + inFlightItems;
    },
    totals,
    drain(): Promise<void> {
      if (inFlight === 0 && queued === 0 && settling === 0) return Promise.resolve();
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
