/**
 * How one group-commit batch of `max` places is shared among the orgs with appends waiting
 * (pure logic; `groupCommit.ts` applies it).
 *
 * Each round gives every open key `max(1, floor(remaining × weight / total weight of the open
 * keys))`, capped by what it has waiting; a key that is then fully served leaves, and what it left
 * unused is shared again among the others. So with equal weights this is plain round-robin, and
 * with weights 4 : 1 two flooding orgs get 4/5 and 1/5 of every full batch. A short queue never
 * wastes places, every waiting key gets at least one place while places remain, and the rotating
 * `start` decides who gets the leftovers of a floor when places are fewer than keys.
 */
export interface Waiting {
  key: string;
  /** Requests the key has waiting (> 0). */
  queued: number;
  /** Its weight (from the org's tier); a value that is not a positive finite number counts as 1. */
  weight: number;
}

export function fairShares(waiting: readonly Waiting[], max: number, start = 0): Map<string, number> {
  const alloc = new Map<string, number>();
  if (waiting.length === 0 || !(max > 0)) return alloc;
  const weight = (w: Waiting) => (Number.isFinite(w.weight) && w.weight > 0 ? w.weight : 1);
  const s = ((start % waiting.length) + waiting.length) % waiting.length;
  let open = waiting.slice(s).concat(waiting.slice(0, s));
  let remaining = max;
  while (remaining > 0 && open.length > 0) {
    const round = remaining;
    const total = open.reduce((t, w) => t + weight(w), 0);
    const next: Waiting[] = [];
    for (const w of open) {
      if (remaining === 0) break;
      const have = alloc.get(w.key) ?? 0;
      const share = Math.max(1, Math.floor((round * weight(w)) / total));
      const give = Math.min(share, w.queued - have, remaining);
      alloc.set(w.key, have + give);
      remaining -= give;
      if (have + give < w.queued) next.push(w);
    }
    open = next;
  }
  return alloc;
}

/**
 * The order in which a flushed batch's callers are answered: the keys with the fewest requests in
 * the batch first (a light org's ack does not wait behind a flooding org's), each key's requests in
 * batch order; ties keep the order of first appearance. Returns indexes into `keys`.
 */
export function settleOrder(keys: readonly string[]): number[] {
  const groups = new Map<string, number[]>();
  keys.forEach((k, i) => {
    const g = groups.get(k);
    if (g) g.push(i);
    else groups.set(k, [i]);
  });
  // Array.prototype.sort is stable: equal sizes keep first-appearance order.
  return [...groups.values()].sort((a, b) => a.length - b.length).flat();
}
