import { LocalBucket } from './tokenBucket.ts';
import type { BucketSpec, Limiter, SlotWant } from './limiter.ts';

/**
 * The Limiter in one process's memory: exact for a single node, and the fallback each node uses
 * while Redis is unreachable (then every node enforces the cluster limits on its own, so the
 * cluster as a whole may admit up to N times them; docs/operations.md "Redis outage").
 */
export function createMemoryLimiter(now: () => number = () => performance.now()): Limiter & { forget(idleMs: number): void } {
  const buckets = new Map<string, { b: LocalBucket; spec: BucketSpec; used: number }>();
  /** key → node → holders */
  const slots = new Map<string, Map<string, number>>();
  const alive = new Map<string, number>();
  const wall = () => Date.now();

  const live = (node: string) => (alive.get(node) ?? Infinity) > wall();
  const total = (key: string) => {
    let n = 0;
    for (const [node, c] of slots.get(key) ?? []) if (live(node)) n += c;
    return n;
  };

  const acquireAll = (want: readonly SlotWant[], node: string): number => {
    const full = want.findIndex((s) => s.max > 0 && total(s.key) >= s.max);
    if (full >= 0) return full;
    for (const { key } of want) {
      let m = slots.get(key);
      if (!m) slots.set(key, (m = new Map()));
      m.set(node, (m.get(node) ?? 0) + 1);
    }
    return -1;
  };

  return {
    async take(key, want, minGrant, spec) {
      let e = buckets.get(key);
      if (!e || e.spec.rate !== spec.rate || e.spec.burst !== spec.burst) {
        e = { b: new LocalBucket(spec.rate, spec.burst, now), spec, used: now() };
        buckets.set(key, e);
      }
      e.used = now();
      const granted = e.b.grant(want, minGrant);
      return { granted, retryAfterMs: granted > 0 ? 0 : e.b.wait(minGrant) };
    },
    async acquire(key, node, max) {
      return acquireAll([{ key, max }], node) < 0;
    },
    async acquireAll(want, node) {
      return acquireAll(want, node);
    },
    async release(key, node) {
      const m = slots.get(key);
      const c = m?.get(node);
      if (!m || !c) return;
      if (c <= 1) m.delete(node);
      else m.set(node, c - 1);
      if (m.size === 0) slots.delete(key);
    },
    async heartbeat(node, held, ttlMs) {
      alive.set(node, wall() + ttlMs);
      for (const [key, c] of held) {
        let m = slots.get(key);
        if (!m) slots.set(key, (m = new Map()));
        if (c > 0) m.set(node, c);
        else m.delete(node);
      }
    },
    async count(key) {
      return total(key);
    },
    async ping() {
      return true;
    },
    async close() {
      buckets.clear();
      slots.clear();
    },
    /** Drops buckets unused for `idleMs` (memory bound for orgs and users that went quiet). */
    forget(idleMs) {
      const t = now();
      for (const [k, e] of buckets) if (t - e.used > idleMs) buckets.delete(k);
    },
  };
}
