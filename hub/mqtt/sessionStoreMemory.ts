import { isLiveOwner, LIVE_MARGIN_MS, NODE_ALIVE_MS, type Adopted, type SessionInfo, type SessionRef, type SessionStore, type StoredSession } from './sessionStore.ts';

interface Rec {
  owner: string;
  clientId: string;
  subs: Record<string, 0 | 1>;
  qos2: number[];
  drops: number;
  last: number;
  queue: Buffer[];
  /** When the record expires (ms since the epoch). */
  deadline: number;
}

/**
 * The session store in process memory, with the Redis adapter's semantics (the conformance suite
 * runs against both). For unit tests of the pure logic only: a node's memory is not shared, so
 * sessions would not survive a move to another node.
 */
export function createMemorySessionStore(now: () => number = Date.now): SessionStore {
  const orgs = new Map<string, Map<string, Rec>>();
  /** node → when its heartbeat lapses; node → refs of the sessions its offline queues hold. */
  const alive = new Map<string, number>();
  /** Nodes that retired through this store: no park or late beat marks them alive again. */
  const retired = new Set<string>();
  const parkedOn = new Map<string, Map<string, SessionRef>>();
  const member = (ref: SessionRef) => `${ref.org}\u0000${ref.key}`;
  const live = (ref: SessionRef): Rec | undefined => {
    const r = orgs.get(ref.org)?.get(ref.key);
    if (r && r.deadline <= now()) {
      orgs.get(ref.org)!.delete(ref.key);
      return undefined;
    }
    return r;
  };
  const view = (r: Rec): StoredSession => ({ owner: r.owner, subs: { ...r.subs }, qos2: [...r.qos2], drops: r.drops });
  const trim = (r: Rec, max: number) => {
    const over = r.queue.length - max;
    if (over <= 0) return 0;
    r.queue.splice(0, over);
    r.drops += over;
    return over;
  };

  return {
    async peek(ref) {
      const r = live(ref);
      return r && view(r);
    },
    async claim(ref, owner, o) {
      let org = orgs.get(ref.org);
      if (!org) orgs.set(ref.org, (org = new Map()));
      if (o.unlessLive) {
        const held = live(ref)?.owner;
        if (held && isLiveOwner(held) && held !== owner) return 'busy';
      }
      if (o.clean) org.delete(ref.key);
      let r = live(ref);
      const present = r !== undefined;
      if (!r) {
        for (const k of [...org.keys()]) live({ org: ref.org, key: k });
        if (org.size >= o.maxSessions) return 'full';
        r = { owner, clientId: o.clientId, subs: {}, qos2: [], drops: 0, last: 0, queue: [], deadline: 0 };
        org.set(ref.key, r);
      }
      Object.assign(r, { owner, clientId: o.clientId, last: now(), deadline: now() + o.expiryMs + LIVE_MARGIN_MS });
      const messages = r.queue;
      r.queue = [];
      return { present, session: view(r), messages };
    },
    async discard(ref) {
      orgs.get(ref.org)?.delete(ref.key);
    },
    async setSubscriptions(ref, owner, subs) {
      const r = live(ref);
      if (r?.owner === owner) r.subs = { ...subs };
    },
    async park(ref, owner, next, s) {
      const r = live(ref);
      if (r?.owner !== owner) return false;
      Object.assign(r, { owner: next, subs: { ...s.subs }, qos2: [...s.qos2], last: now(), deadline: now() + s.expiryMs });
      r.queue = [...s.pending, ...r.queue];
      trim(r, s.maxQueue);
      if (s.queueNode) {
        if (!retired.has(s.queueNode)) alive.set(s.queueNode, now() + NODE_ALIVE_MS);
        if (!parkedOn.has(s.queueNode)) parkedOn.set(s.queueNode, new Map());
        parkedOn.get(s.queueNode)!.set(member(ref), ref);
      }
      return true;
    },
    async heartbeat(node) {
      if (!retired.has(node)) alive.set(node, now() + NODE_ALIVE_MS);
    },
    async retire(node) {
      retired.add(node);
      alive.set(node, 0);
    },
    async adoptOrphans(node, newOwner, limit) {
      const out: Adopted[] = [];
      for (const [other, refs] of parkedOn) {
        if (other === node || (alive.get(other) ?? 0) > now()) continue;
        for (const [m, ref] of refs) {
          if (out.length >= limit) return out;
          refs.delete(m);
          const r = live(ref);
          if (!r || !r.owner.startsWith(`queue:${other}:`)) continue;
          r.owner = newOwner();
          if (!parkedOn.has(node)) parkedOn.set(node, new Map());
          parkedOn.get(node)!.set(m, ref);
          out.push({ ref, owner: r.owner, subs: { ...r.subs }, expiryMs: r.deadline - now() });
        }
      }
      return out;
    },
    async unpark(ref, node) {
      parkedOn.get(node)?.delete(member(ref));
    },
    async append(ref, owner, entries, maxQueue) {
      const r = live(ref);
      if (r?.owner !== owner) return undefined;
      r.queue.push(...entries);
      const dropped = trim(r, maxQueue);
      return { length: r.queue.length, dropped };
    },
    async list(org, limit) {
      const out: (SessionInfo & { deadline: number })[] = [];
      for (const key of [...(orgs.get(org)?.keys() ?? [])]) {
        const r = live({ org, key });
        if (r) out.push({ clientId: r.clientId, connected: r.owner.startsWith('live:'), queued: r.queue.length, dropped: r.drops, lastActivity: r.last, expiresAt: r.deadline, deadline: r.deadline });
      }
      return out
        .sort((a, b) => b.deadline - a.deadline)
        .slice(0, limit)
        .map(({ deadline: _, ...s }) => s);
    },
    async ping() {
      return true;
    },
    async close() {},
  };
}
