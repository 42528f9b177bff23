import { comparePosition, formatPosition, type EventStore, type Position, type ReadAllBatch } from '../hub/eventstore/eventStore.ts';

export type BatchReader = (after: Position, batchSize: number) => Promise<ReadAllBatch>;

export interface SharedReaderOptions {
  /** Most batches held; a runner that reads ahead of the others waits (up to maxWaitMs) for room. */
  maxEntries?: number;
  maxWaitMs?: number;
}

export interface SharedReader {
  /** The reader of one more runner (one per projection runner of the process). */
  reader(): BatchReader;
}

interface Entry {
  after: Position;
  p: Promise<ReadAllBatch>;
  /** The runners that took it. */
  takenBy: Set<number>;
}

/**
 * One read of the log for all the projections of a process. Runners that stand at the same
 * position with the same batch size (every projection catching up from zero, or following the
 * head) share one `readAll` instead of each reading every event: the read, not the write, was the
 * larger cost. A full batch is a fixed prefix of the log after its cursor, so handing it to a
 * second runner later is exactly what that runner would have read. An entry stays while a runner
 * that has not taken it may still read it, so the fastest runner waits for room rather than evicting
 * what slower ones still need (bounded by maxWaitMs), and the slowest runner never waits: nobody
 * else will take what it reads, so that is neither cached nor held back, and its progress is what
 * frees the room. An entry that every runner that has not taken it is already past (a runner's
 * reads only move forward, unless it restarts from its checkpoint) is dropped at once. Before, a
 * runner that restarted far behind the others (after a crash, its checkpoint was older than
 * theirs) waited for room like the others, which waited for it: every read waited maxWaitMs, and
 * catching up ran at a few batches a second. A short (caught-up) batch is dropped once it
 * resolves, so followers re-read the head.
 */
export function createSharedReader(source: EventStore | BatchReader, opts: SharedReaderOptions = {}): SharedReader {
  const readAll: BatchReader = typeof source === 'function' ? source : (after, batchSize) => source.readAll({ after, batchSize });
  const maxEntries = opts.maxEntries ?? 16;
  const maxWaitMs = opts.maxWaitMs ?? 2000;
  const cache = new Map<string, Entry>();
  /** Each runner's latest read position (undefined before its first read). */
  const cursors: (Position | undefined)[] = [];

  /** Some runner that has not taken `e` may still read it: it has not read yet, or not past it. */
  const wanted = (e: Entry) => cursors.some((c, i) => !e.takenBy.has(i) && (c === undefined || comparePosition(c, e.after) <= 0));
  const dropUnwanted = () => {
    for (const [k, e] of cache) if (!wanted(e)) cache.delete(k);
  };
  const take = (key: string, e: Entry, runner: number) => {
    e.takenBy.add(runner);
    if (!wanted(e)) cache.delete(key);
    return e.p;
  };

  const read = async (runner: number, after: Position, batchSize: number): Promise<ReadAllBatch> => {
    cursors[runner] = after;
    const key = `${formatPosition(after)}/${batchSize}`;
    const hit = cache.get(key);
    if (hit) return take(key, hit, runner);
    // No other runner at or behind this position: none will want this batch, so it is read for
    // this runner alone, without waiting for room (this is the slowest runner, the one whose
    // progress frees the room the others wait for).
    if (!cursors.some((c, i) => i !== runner && (c === undefined || comparePosition(c, after) <= 0))) return readAll(after, batchSize);
    dropUnwanted();
    for (let waited = 0; cache.size >= maxEntries && waited < maxWaitMs; waited += 5) {
      await new Promise((r) => setTimeout(r, 5));
      const h = cache.get(key); // another runner may have started this read meanwhile
      if (h) return take(key, h, runner);
      dropUnwanted();
    }
    while (cache.size >= maxEntries) cache.delete(cache.keys().next().value!);
    const entry: Entry = { after, p: readAll(after, batchSize), takenBy: new Set([runner]) };
    if (wanted(entry)) cache.set(key, entry);
    entry.p.then(
      (b) => {
        if (b.caughtUp && cache.get(key) === entry) cache.delete(key);
      },
      () => {
        if (cache.get(key) === entry) cache.delete(key);
      },
    );
    return entry.p;
  };

  return {
    reader() {
      const runner = cursors.length;
      cursors.push(undefined);
      return (after, batchSize) => read(runner, after, batchSize);
    },
  };
}
