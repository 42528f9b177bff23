import type { Bus } from '../bus/bus.ts';
import type { Logger } from '../log.ts';
import { ORG_SCOPE, presenceTopic, topicScope, type PresenceEntry, type PresenceStore } from './presence.ts';

export interface PresenceOptions {
  store: PresenceStore;
  bus: Bus;
  log: Logger;
  nodeId: string;
  /** First topic segments with per-topic presence. */
  namespaces: ReadonlySet<string>;
  /** Listed entries per scope (org or topic); past it connections are only counted. */
  cap: number;
  heartbeatMs: number;
  ttlMs: number;
  /** Publish join/leave of the org scope too (ORGHUB_PRESENCE_ORG_EVENTS). */
  orgEvents: boolean;
}

interface Local {
  readonly org: string;
  readonly entry: PresenceEntry;
  /** scope → whether it joined as counted only (set once its join has run). */
  readonly scopes: Map<string, { counted: boolean }>;
  /** Store calls of one session run in order (a leave never overtakes its join). */
  chain: Promise<void>;
}

/** What the transports tell presence. Never throws and never waits: presence is best effort. */
export interface PresenceTracker {
  connected(org: string, entry: Omit<PresenceEntry, 'node' | 'since'>): void;
  subscribed(session: string, pattern: string): void;
  unsubscribed(session: string, pattern: string): void;
  disconnected(session: string): void;
  readonly store: PresenceStore;
  stats(): { sessions: number; errors: number };
  close(): Promise<void>;
}

/**
 * This node's side of presence: joins and leaves go to the shared store in per-session order, and
 * each change is published as `{"event":"join"|"leave", ...entry}` on `$presence/<scope>` (org-wide:
 * `$presence/@org`), which only subscribers granted it receive. A heartbeat keeps this node's
 * entries alive; the same timer reaps the entries of nodes whose heartbeat lapsed and publishes
 * their leaves.
 */
export function createPresenceTracker(opts: PresenceOptions): PresenceTracker {
  const { store, bus, log, nodeId } = opts;
  const locals = new Map<string, Local>();
  let errors = 0;

  const announce = (org: string, scope: string, event: 'join' | 'leave', entry: PresenceEntry) => {
    if (scope === ORG_SCOPE && !opts.orgEvents) return;
    try {
      bus.publish(org, presenceTopic(scope), Buffer.from(JSON.stringify({ event, scope, ...entry })), { contentType: 'json' });
    } catch {
      // NATS down or a scope too deep for a `$presence/` topic: the store stays right, the event is lost.
    }
  };

  const run = (l: Local, op: () => Promise<void>) => {
    l.chain = l.chain.then(op).catch((err) => {
      errors++;
      log.warn({ err: (err as Error).message, session: l.entry.session }, 'presence update failed');
    });
  };

  const join = (l: Local, scope: string) => {
    if (l.scopes.has(scope)) return;
    const h = { counted: false };
    l.scopes.set(scope, h);
    run(l, async () => {
      const r = await store.join(l.org, scope, l.entry, opts.cap);
      h.counted = r === 'counted';
      if (r !== 'present') announce(l.org, scope, 'join', l.entry);
    });
  };

  const leave = (l: Local, scope: string) => {
    const h = l.scopes.get(scope);
    if (!h) return;
    l.scopes.delete(scope);
    // Runs after the join (same chain), so `h.counted` is known by then.
    run(l, async () => {
      if (await store.leave(l.org, scope, l.entry.session, nodeId, h.counted)) announce(l.org, scope, 'leave', l.entry);
    });
  };

  const beat = async () => {
    try {
      await store.heartbeat(nodeId, opts.ttlMs);
      for (const r of await store.reap(nodeId)) announce(r.org, r.scope, 'leave', r.entry);
    } catch (err) {
      errors++;
      log.warn({ err: (err as Error).message }, 'presence heartbeat failed');
    }
  };
  void beat();
  const timer = setInterval(() => void beat(), opts.heartbeatMs);
  timer.unref();

  return {
    store,
    connected(org, e) {
      const l: Local = { org, entry: { ...e, node: nodeId, since: Date.now() }, scopes: new Map(), chain: Promise.resolve() };
      locals.set(e.session, l);
      join(l, ORG_SCOPE);
    },
    subscribed(session, pattern) {
      const l = locals.get(session);
      const scope = l && topicScope(pattern, opts.namespaces);
      if (l && scope) join(l, scope);
    },
    unsubscribed(session, pattern) {
      const l = locals.get(session);
      const scope = l && topicScope(pattern, opts.namespaces);
      if (l && scope) leave(l, scope);
    },
    disconnected(session) {
      const l = locals.get(session);
      if (!l) return;
      locals.delete(session);
      for (const scope of [...l.scopes.keys()]) leave(l, scope);
    },
    stats: () => ({ sessions: locals.size, errors }),
    async close() {
      clearInterval(timer);
      await Promise.all([...locals.values()].map((l) => l.chain));
      try {
        for (const r of await store.retire(nodeId)) announce(r.org, r.scope, 'leave', r.entry);
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'presence entries not removed at shutdown; other nodes reap them');
      }
      locals.clear();
      await store.close();
    },
  };
}
