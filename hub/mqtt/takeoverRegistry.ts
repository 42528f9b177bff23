import { createHash } from 'node:crypto';
import type { Bus } from '../bus/bus.ts';
import type { Logger } from '../log.ts';

/** What the registry needs from a session (live, or an offline queue holding a parked session). */
export interface Registrant {
  /** Connection id (the tie-break between two registrations at the same millisecond). */
  readonly session: string;
  /**
   * Closes it because a newer registration of the same (org, sub, client id) exists; `clean`: that
   * registration starts a clean session (it ends the stored one), as far as the notice tells.
   */
  takenOver(clean?: boolean): void;
}

/** A takeover announcement, as sent between nodes (alone, or several in a JSON array). */
interface TakeoverNotice {
  /** SHA-256 of (org, sub, client id): the id itself never reaches NATS. */
  k: string;
  node: string;
  session: string;
  /** When the announcing node registered the session (ms since the epoch). */
  at: number;
  /** 1: the new connection starts clean (a delayed Will of the old session is published, not cancelled). */
  c?: 1;
}

export const TAKEOVER_CONTROL = 'mqtt.takeover';

/**
 * The hashed (org, sub, client id) key of takeover notices and of the session store. Client ids
 * never travel. Two principals of one org never take over (nor resume) each other's sessions, nor
 * fire each other's Will. The sub is length-prefixed: it may contain any character, and no
 * (sub, client id) pair may spell another.
 */
export function clientKey(org: string, sub: string, clientId: string): string {
  return createHash('sha256').update(org).update('\u0000').update(`${sub.length}:${sub}`).update('\u0000').update(clientId).digest('base64url');
}

export interface TakeoverRegistry {
  /**
   * Registers `r` under `key`, taking over an older registrant with the same key on any node.
   * `clean`: the new connection discards any stored session (watchers are told so).
   */
  register(key: string, r: Registrant, clean?: boolean): void;
  /** Forgets `r` (only if it is still the registrant of `key`). */
  release(key: string, r: Registrant): void;
  /**
   * Tells `r` (an offline queue) when `key` is next registered here or on another node, without
   * taking anything over itself. Once told, it is forgotten.
   */
  watch(key: string, r: Registrant): void;
  unwatch(key: string, r: Registrant): void;
  /** A live registrant holds `key` on this node. */
  holds(key: string): boolean;
  close(): void;
}

/**
 * Client-id registry for session takeover (MQTT 3.1.1 §3.1.4-2, MQTT 5 §3.1.4-3), across nodes: a
 * registration on this node takes over an older one with the same (org, sub, client id) here, and is
 * announced on the bus so that every other node takes over its own older one. When two nodes
 * register the same id at nearly the same moment, the later registration (then the greater session
 * id) wins on both, so exactly one survives. Keyed by `clientKey` (org, sub, client id): two orgs,
 * and two principals of one org, never take over each other's sessions.
 */
export function createTakeoverRegistry(deps: { bus: Bus; nodeId: string; log: Logger }): TakeoverRegistry {
  const byKey = new Map<string, { r: Registrant; at: number }>();
  const watchers = new Map<string, Set<Registrant>>();
  const tellWatchers = (key: string, clean: boolean) => {
    const w = watchers.get(key);
    if (!w) return;
    watchers.delete(key);
    for (const r of w) r.takenOver(clean);
  };
  const newer = (a: { at: number; session: string }, b: { at: number; session: string }) => a.at > b.at || (a.at === b.at && a.session > b.session);

  const onNotice = (n: TakeoverNotice) => {
    if (n === null || typeof n !== 'object' || n.node === deps.nodeId || typeof n.k !== 'string' || typeof n.at !== 'number' || typeof n.session !== 'string') return;
    tellWatchers(n.k, n.c === 1);
    const local = byKey.get(n.k);
    if (local && newer(n, { at: local.at, session: local.r.session })) {
      byKey.delete(n.k);
      local.r.takenOver();
    }
  };
  const unsubscribe = deps.bus.subscribeControl(TAKEOVER_CONTROL, (payload) => {
    let m: TakeoverNotice | TakeoverNotice[];
    try {
      m = JSON.parse(Buffer.from(payload).toString('utf8')) as TakeoverNotice | TakeoverNotice[];
    } catch {
      return;
    }
    if (Array.isArray(m)) for (const n of m) onNotice(n);
    else onNotice(m);
    // Its own notices come back from NATS: dropped unread where the bus can tell (onNotice ignores the rest).
  }, { othersOnly: true });

  // Notices registered in one turn leave as one signed message (an array; a lone notice keeps the
  // single-object form): a burst of reconnects costs one HMAC and one NATS publish per turn, not per
  // connection. They leave before any packet the client sends after CONNACK is read (setImmediate
  // runs before the next poll), so the cross-node ordering the takeover relies on holds.
  let pending: TakeoverNotice[] = [];
  const announce = () => {
    const batch = pending;
    if (batch.length === 0) return;
    pending = [];
    try {
      deps.bus.publishControl(TAKEOVER_CONTROL, Buffer.from(JSON.stringify(batch.length === 1 ? batch[0] : batch)));
    } catch (err) {
      // NATS is down: takeover still holds on this node; other nodes are not told.
      deps.log.warn({ err: (err as Error).message, sessions: batch.length }, 'mqtt takeover not announced to other nodes');
    }
  };

  return {
    register(key, r, clean = false) {
      const at = Date.now();
      const old = byKey.get(key);
      byKey.set(key, { r, at });
      if (old && old.r !== r) old.r.takenOver(clean);
      tellWatchers(key, clean);
      if (pending.length === 0) setImmediate(announce);
      pending.push({ k: key, node: deps.nodeId, session: r.session, at, ...(clean ? { c: 1 as const } : {}) });
    },
    release(key, r) {
      if (byKey.get(key)?.r === r) byKey.delete(key);
    },
    watch(key, r) {
      let w = watchers.get(key);
      if (!w) watchers.set(key, (w = new Set()));
      w.add(r);
    },
    unwatch(key, r) {
      const w = watchers.get(key);
      if (w?.delete(r) && w.size === 0) watchers.delete(key);
    },
    holds: (key) => byKey.has(key),
    close() {
      announce();
      unsubscribe();
    },
  };
}
