import type { HistoryRead, HistoryStore } from './history.ts';

/**
 * Identical history reads (same org, topic, `after` and `limit`) asked for in the same turn of the
 * event loop share one store read: in a resume storm (a node restarts, every client of a busy topic
 * resumes from about the same offset) the hub otherwise reads and decodes the same entries once per
 * client. Only reads that have not been sent yet are joined, so a shared read is always sent after
 * every joiner asked for it: each subscriber's live subscription was confirmed before the read, and
 * nothing can fall between the read and the live messages (hub/history/subscription.ts). Joiners get
 * the same HistoryRead object, which callers treat as read-only.
 */
export function shareReads(store: HistoryStore): HistoryStore & { readonly stats: { reads: number; shared: number } } {
  let pending = new Map<string, { args: Parameters<HistoryStore['read']>; waiters: { resolve: (r: HistoryRead) => void; reject: (e: unknown) => void }[] }>();
  let scheduled = false;
  const stats = { reads: 0, shared: 0 };

  const send = () => {
    scheduled = false;
    const batch = pending;
    pending = new Map();
    for (const { args, waiters } of batch.values()) {
      stats.reads++;
      stats.shared += waiters.length - 1;
      store.read(...args).then(
        (r) => waiters.forEach((w) => w.resolve(r)),
        (e) => waiters.forEach((w) => w.reject(e)),
      );
    }
  };

  return {
    stats,
    append: (org, topic, m, r) => store.append(org, topic, m, r),
    read(org, topic, after, limit, r) {
      // Retention is per namespace, so it is the same for every read of one topic.
      const key = `${org}\n${topic}\n${after}\n${limit}`;
      return new Promise<HistoryRead>((resolve, reject) => {
        const p = pending.get(key);
        if (p) p.waiters.push({ resolve, reject });
        else pending.set(key, { args: [org, topic, after, limit, r], waiters: [{ resolve, reject }] });
        if (!scheduled) {
          scheduled = true;
          setImmediate(send);
        }
      });
    },
    ping: () => store.ping(),
    close: () => store.close(),
  };
}
