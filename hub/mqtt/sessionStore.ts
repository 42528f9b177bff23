/**
 * Persistent MQTT sessions (3.1.1 clean session 0, MQTT 5 Session Expiry Interval > 0), shared by
 * every hub node so that a client resumes its session on any of them (docs/mqtt.md "Sessions").
 *
 * A session is owned by exactly one holder at a time, named by an opaque owner token: the live
 * connection, or, once it has gone, the offline queue of the node it left. Every write names the
 * owner it expects, so a holder that lost the session (taken over, resumed elsewhere) can no longer
 * change it. Queued messages are opaque encoded entries (`sessionCodec.ts`).
 */

/** Where a session lives: the org from the verified token and `clientKey(org, sub, clientId)`. */
export interface SessionRef {
  readonly org: string;
  /** SHA-256 of (org, client id), base64url: client ids never appear in storage keys. */
  readonly key: string;
}

/** A stored session as a resuming connection needs it. */
export interface StoredSession {
  /** Current owner token ('' when nobody holds it). */
  owner: string;
  /** Filter → granted QoS. */
  subs: Record<string, 0 | 1>;
  /** Inbound QoS 2 packet ids between PUBREC and PUBREL. */
  qos2: number[];
  /** Messages dropped from this session's queue so far (oldest first when it was full). */
  drops: number;
}

/** One session as the inspection endpoint lists it. */
export interface SessionInfo {
  /** The client id, clipped to 128 characters (display only). */
  clientId: string;
  connected: boolean;
  queued: number;
  dropped: number;
  /** Last connect or disconnect, ms since the epoch. */
  lastActivity: number;
  /** When the stored session expires (ms since the epoch); for a connected one, the bound of its record. */
  expiresAt: number;
}

export interface ClaimOptions {
  /** Discard what is stored first (3.1.1 clean session 1, MQTT 5 Clean Start). */
  clean: boolean;
  clientId: string;
  /** Session expiry once the connection ends, in ms (> 0). */
  expiryMs: number;
  /** Persistent sessions an org may hold; claiming a new one past it answers 'full'. */
  maxSessions: number;
  /** Claim only if no other live connection holds the session (else 'busy', nothing changed). */
  unlessLive?: boolean;
}

export interface Claimed {
  /** A session existed (CONNACK `session present`). */
  present: boolean;
  session: StoredSession;
  /** Queued entries taken out of the store, oldest first (the caller now delivers them). */
  messages: Buffer[];
}

export interface ParkState {
  /** The node whose offline queue takes the session (indexed, so that another node adopts it if this one stops beating). */
  queueNode?: string;
  subs: Record<string, 0 | 1>;
  qos2: number[];
  /** Entries not acknowledged or not yet sent, oldest first: they go ahead of anything queued later. */
  pending: Buffer[];
  expiryMs: number;
  maxQueue: number;
}

/** Result of appending to a parked session's queue. */
export interface Appended {
  length: number;
  /** Oldest entries dropped by this append because the queue was full. */
  dropped: number;
}

/**
 * How long a node counts as alive after its last heartbeat (or park): past it, the sessions its
 * offline queues hold are adopted by another node. Nodes beat every third of it.
 */
export const NODE_ALIVE_MS = 6000;

/** A parked session taken over from the offline queue of a node that stopped (`adoptOrphans`). */
export interface Adopted {
  ref: SessionRef;
  /** The adopting queue's owner token, now in the store. */
  owner: string;
  subs: Record<string, 0 | 1>;
  /** What is left of the session's expiry. */
  expiryMs: number;
}

/**
 * How long a connected session's record lives without being parked (the node holding it died):
 * its expiry plus this margin. Bounds every key even when no node ever parks it.
 */
export const LIVE_MARGIN_MS = 24 * 3600_000;

export interface SessionStore {
  /** The stored session, or undefined. */
  peek(ref: SessionRef): Promise<StoredSession | undefined>;
  /**
   * Makes `owner` (a live connection) the owner, creating the session when none is stored, and
   * takes its queued entries. 'full' when a new session would pass `maxSessions`, 'busy' (with
   * `unlessLive`) when another live connection holds it; nothing changed in either case.
   */
  claim(ref: SessionRef, owner: string, opts: ClaimOptions): Promise<Claimed | 'full' | 'busy'>;
  /** Deletes the session and its queue (a clean connection, or session expiry 0). */
  discard(ref: SessionRef): Promise<void>;
  /** Records the subscriptions of a connected session (no-op unless `owner` holds it). */
  setSubscriptions(ref: SessionRef, owner: string, subs: Record<string, 0 | 1>): Promise<void>;
  /**
   * The connection ended: stores its state, puts `pending` at the head of the queue, hands the
   * session to `next` and starts its expiry. False (nothing written) unless `owner` holds it.
   */
  park(ref: SessionRef, owner: string, next: string, state: ParkState): Promise<boolean>;
  /** Appends to the queue of a session `owner` holds, dropping the oldest past `maxQueue`; undefined unless `owner` holds it. */
  append(ref: SessionRef, owner: string, entries: Buffer[], maxQueue: number): Promise<Appended | undefined>;
  /**
   * The node is alive for NODE_ALIVE_MS more (a park by its queue counts as a beat too). Parked
   * sessions whose offline queue was on a node that has stopped beating are adopted by another
   * (`adoptOrphans`).
   */
  heartbeat(node: string): Promise<void>;
  /**
   * The node stops: its parked sessions may be adopted at once. From then on neither a park (the
   * sessions it parks on its way down) nor a late heartbeat marks it alive again.
   */
  retire(node: string): Promise<void>;
  /**
   * Takes over, for `node`, up to `limit` parked sessions whose offline queue is on a node that no
   * longer beats (each gets the owner `newOwner()` returns; one a client resumed meanwhile is skipped).
   */
  adoptOrphans(node: string, newOwner: () => string, limit: number): Promise<Adopted[]>;
  /** The offline queue of `node` let go of the session (its index entry goes; best effort). */
  unpark(ref: SessionRef, node: string): Promise<void>;
  /** The org's sessions, most recently active first, at most `limit`. */
  list(org: string, limit: number): Promise<SessionInfo[]>;
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

/** Owner token of a live connection. */
export function liveOwner(node: string, session: string): string {
  return `live:${node}:${session}`;
}

/** Owner token of the offline queue a node keeps for a parked session. */
export function queueOwner(node: string, session: string): string {
  return `queue:${node}:${session}`;
}

export function isLiveOwner(owner: string): boolean {
  return owner.startsWith('live:');
}
