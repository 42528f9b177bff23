import { formatPosition, type EventStore, type Position, type ReadAllBatch } from '../hub/eventstore/eventStore.ts';

export type BatchReader = (after: Position, batchSize: number) => Promise<ReadAllBatch>;

/**
 * One read of the log for all the projections of a process. Runners that stand at the same
 * position with the same batch size (every projection catching up from zero, or following the
 * head) share one `readAll` instead of each reading every event: the read, not the write, was the
 * larger cost. A full batch is a fixed prefix of the log after its cursor, so handing it to a
 * second runner later is exactly what that runner would have read; a short (caught-up) batch is
 * dropped from the cache once it resolves, so followers re-read the head.
 */
export function createSharedReader(store: EventStore, maxEntries = 8): BatchReader {
  const cache = new Map<string, Promise<ReadAllBatch>>();
  return (after, batchSize) => {
    const key = `${formatPosition(after)}/${batchSize}`;
    const hit = cache.get(key);
    if (hit) return hit;
    const p = store.readAll({ after, batchSize });
    cache.set(key, p);
    p.then(
      (b) => {
        if (b.caughtUp && cache.get(key) === p) cache.delete(key);
      },
      () => {
        if (cache.get(key) === p) cache.delete(key);
      },
    );
    while (cache.size > maxEntries) cache.delete(cache.keys().next().value!);
    return p;
  };
}
