import type { AuditSink } from '../audit/audit.ts';
import type { Bus } from '../bus/bus.ts';
import type { Logger } from '../log.ts';
import { ORG_SCOPE, presenceTopic, topicScope, type PresenceEntry, type PresenceStore, type Reaped } from './presence.ts';

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
  /**
   * Where the reaper records the end of each session of a dead node (`session.disconnected`,
   * reason `node_lost`), so the sessions/devices read models agree with presence.
   */
  audit?: AuditSink;
}

/** The `reason` of a `session.disconnected` recorded for a connection whose node died. */
export const NODE_LOST = 'node_lost';

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
  /** `eventsLost`: join/leave events that could not be published (bus down); the store stayed right. */
  stats(): { sessions: number; errors: number; eventsLost: number };
  close(): Promise<void>;
}

/**
 * This node's side of presence: joins and leaves go to the shared store in per-session order, and
 * each change is published as `{"event":"join"|"leave", ...entry}` on `$presence/<scope>` (org-wide:
 * `$presence/@org`), which only subscribers granted it receive. A heartbeat keeps this node's
 * entries alive; the same timer reaps the entries of nodes whose heartbeat lapsed and publishes
 * their leaves.
 *
 * Only a node whose bus is connected reaps: a reap hands the dead node's entries to exactly one
 * reaper, and that reaper alone can announce their leaves. A node still connecting to NATS at start
 * (its first heartbeat runs at once) or cut off from it would otherwise win the race and lose every
 * leave event with the entries already gone (the defect behind the flaky crash test of #11).
 */
export function createPresenceTracker(opts: PresenceOptions): PresenceTracker {
  const { store, bus, log, nodeId } = opts;
  const locals = new Map<string, Local>();
  let errors = 0;
  let eventsLost = 0;

  const announce = (org: string, scope: string, event: 'join' | 'leave', entry: PresenceEntry) => {
    if (scope === ORG_SCOPE && !opts.orgEvents) return;
    try {
      bus.publish(org, presenceTopic(scope), Buffer.from(JSON.stringify({ event, scope, ...entry })), { contentType: 'json' });
    } catch (err) {
      // NATS down or a scope too deep for a `$presence/` topic: the store stays right, the event is lost.
      eventsLost++;
      log.debug({ err: (err as Error).message, org, scope, event }, 'presence event not published');
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

  /** Each session is returned by the store to exactly one reaper, so its end is recorded once. */
  const recordLost = (reaped: Reaped) => {
    if (reaped.sessions.length > 0) log.warn({ sessions: reaped.sessions.length, nodes: [...new Set(reaped.sessions.map((x) => x.entry.node))] }, 'presence: sessions of a dead node ended (node_lost)');
    const now = Date.now();
    for (const { org, entry } of reaped.sessions) {
      opts.audit?.record(
        org,
        'session.disconnected',
        { transport: entry.transport, ...(entry.clientId ? { clientId: entry.clientId } : {}), reason: NODE_LOST, node: entry.node, durationMs: Math.max(0, now - entry.since) },
        { actor: entry.sub, session: entry.session },
      );
    }
  };

  const beat = async () => {
    try {
      await store.heartbeat(nodeId, opts.ttlMs);
      if (!bus.connected) return; // leave the dead nodes to a reaper that can announce their leaves
      const reaped = await store.reap(nodeId);
      for (const r of reaped.leaves) announce(r.org, r.scope, 'leave', r.entry);
      recordLost(reaped);
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
    stats: () => ({ sessions: locals.size, errors, eventsLost }),
    async close() {
      clearInterval(timer);
      await Promise.all([...locals.values()].map((l) => l.chain));
      try {
        // Sessions of this node ended through the transports (each recorded its own disconnect).
        for (const r of (await store.retire(nodeId)).leaves) announce(r.org, r.scope, 'leave', r.entry);
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'presence entries not removed at shutdown; other nodes reap them');
      }
      locals.clear();
      await store.close();
    },
  };
}
