/**
 * Presence (docs/presence.md): who is online per org, and per topic for namespaces configured with
 * presence (ORGHUB_PRESENCE_NAMESPACES). Entries live in a shared store (Redis adapter:
 * `redisPresence.ts`) so every node answers for the whole cluster; each node's entries vanish
 * when its heartbeat stops (a crash), within ORGHUB_PRESENCE_TTL_MS plus one sweep.
 */

/** The scope of org-wide presence; topics never start with `@` in practice, and `$presence/@org` carries its events. */
export const ORG_SCOPE = '@org';

/** One connection present in a scope. Times are ms since the epoch. */
export interface PresenceEntry {
  session: string;
  /** Token `sub`: a user, service or device id. */
  sub: string;
  /** MQTT client id, when the connection is MQTT. */
  clientId?: string;
  transport: 'ws' | 'mqtt';
  node: string;
  since: number;
}

export interface PresenceList {
  entries: PresenceEntry[];
  /** Connections present, including those past the per-scope cap (counted, not listed). */
  connections: number;
  /** Distinct `sub` among the listed entries. */
  users: number;
  /** True when the scope is over its cap: `entries` is not everyone. */
  truncated: boolean;
}

/** The result of a join: listed, only counted (the scope is at its cap), or already present. */
export type JoinResult = 'listed' | 'counted' | 'present';

/** What a reap or a retire removed: listed entries (for leave events) and the node's sessions. */
export interface Reaped {
  leaves: { org: string; scope: string; entry: PresenceEntry }[];
  /**
   * Every connection the node held (its org-scope entry, listed or only counted past the cap), each
   * returned to exactly one caller: the reaper records their ends (`session.disconnected`, reason
   * `node_lost`) so the sessions/devices read models agree with presence.
   */
  sessions: { org: string; entry: PresenceEntry }[];
}

/**
 * The shared presence store. Every method may reject when the store is unreachable; callers treat
 * presence as best effort and never fail a connection for it.
 */
export interface PresenceStore {
  join(org: string, scope: string, entry: PresenceEntry, cap: number): Promise<JoinResult>;
  /** Removes one session from a scope; `counted` says how it had joined. True when it was there. */
  leave(org: string, scope: string, session: string, node: string, counted: boolean): Promise<boolean>;
  list(org: string, scope: string): Promise<PresenceList>;
  /** Marks `node` alive for `ttlMs`. */
  heartbeat(node: string, ttlMs: number): Promise<void>;
  /**
   * Removes every entry of each node whose heartbeat has lapsed (never `self`), and returns the
   * removed entries with their scope, for leave events. Safe to run on every node at once: an
   * entry is returned by exactly one of them.
   */
  reap(self: string): Promise<Reaped>;
  /** Removes this node's entries and its heartbeat (clean shutdown). */
  retire(node: string): Promise<Reaped>;
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

/** True for `$presence/...`: only the hub publishes presence events there, whatever a token's grants say. */
export function isPresenceTopic(topic: string): boolean {
  return topic.startsWith('$presence/');
}

/** The `$presence/...` topic that carries join and leave events of a scope. */
export function presenceTopic(scope: string): string {
  return `$presence/${scope}`;
}

/**
 * The presence scope of a subscription, or undefined: only a concrete topic (no wildcard) whose
 * first segment is a configured namespace has per-topic presence.
 */
export function topicScope(pattern: string, namespaces: ReadonlySet<string>): string | undefined {
  if (namespaces.size === 0 || pattern.includes('+') || pattern.includes('#')) return undefined;
  const first = pattern.split('/', 1)[0];
  return namespaces.has(first) ? pattern : undefined;
}

/** Parses `ORGHUB_PRESENCE_NAMESPACES` / `ORGHUB_HISTORY_NAMESPACES`-style lists: comma-separated first segments. */
export function parseNamespaces(list: string): Set<string> {
  return new Set(
    list
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  );
}
