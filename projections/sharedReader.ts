import { formatPosition, type EventStore, type Position, type ReadAllBatch } from '../hub/eventstore/eventStore.ts';

export type BatchReader = (after: Position, batchSize: number) => Promise<ReadAllBatch>;

export interface SharedReaderOptions {
  /** Runners sharing the reader: an entry is dropped once this many have taken it. */
  consumers: number;
  /** Most batches held; a runner that reads ahead of the others waits (up to maxWaitMs) for room. */
  maxEntries?: number;
  maxWaitMs?: number;
}

/**
 * One read of the log for all the projections of a process. Runners that stand at the same
 * position with the same batch size (every projection catching up from zero, or following the
 * head) share one `readAll` instead of each reading every event: the read, not the write, was the
 * larger cost. A full batch is a fixed prefix of the log after its cursor, so handing it to a
 * second runner later is exactly what that runner would have read. An entry stays until every
 * consumer took it; the fastest runner waits for room rather than evicting what slower ones still
 * need (bounded: after maxWaitMs the oldest entry goes, e.g. when a runner restarted elsewhere in
 * the log). A short (caught-up) batch is dropped once it resolves, so followers re-read the head.
 */
export function createSharedReader(source: EventStore | BatchReader, opts: SharedReaderOptions): BatchReader {
  const readAll: BatchReader = typeof source === 'function' ? source : (after, batchSize) => source.readAll({ after, batchSize });
  const maxEntries = opts.maxEntries ?? 16;
  const maxWaitMs = opts.maxWaitMs ?? 2000;
  const cache = new Map<string, { p: Promise<ReadAllBatch>; taken: number }>();
  return async (after, batchSize) => {
    const key = `${formatPosition(after)}/${batchSize}`;
    const hit = cache.get(key);
    if (hit) {
      if (++hit.taken >= opts.consumers) cache.delete(key);
      return hit.p;
    }
    for (let waited = 0; cache.size >= maxEntries && waited < maxWaitMs; waited += 5) {
      await new Promise((r) => setTimeout(r, 5));
      const h = cache.get(key); // another runner may have started this read meanwhile
      if (h) {
        if (++h.taken >= opts.consumers) cache.delete(key);
        return h.p;
      }
    }
    while (cache.size >= maxEntries) cache.delete(cache.keys().next().value!);
    const p = readAll(after, batchSize);
    const entry = { p, taken: 1 };
    if (opts.consumers > 1) cache.set(key, entry);
    p.then(
      (b) => {
        if (b.caughtUp && cache.get(key) === entry) cache.delete(key);
      },
      () => {
        if (cache.get(key) === entry) cache.delete(key);
      },
    );
    return p;
  };
}
