import type { Principal } from '../auth/principal.ts';
import type { Transport } from './context.ts';

/**
 * Why the hub ends a session from outside its transport. Each transport maps it onto its own wire
 * code (WebSocket close 4101, MQTT 5 DISCONNECT 0x98; docs/protocol.md, docs/mqtt.md).
 */
export type SessionEnd = 'revoked' | 'suspended';

/** A live, authenticated connection as the rest of the hub sees it, whatever its transport. */
export interface LiveSession {
  /** Hub-assigned id (a UUID), the `session` of audit events and of `{session}` revocations. */
  readonly session: string;
  readonly transport: Exclude<Transport, 'http'>;
  /** The current principal: it changes when a WebSocket refreshes its token in band. */
  readonly principal: Principal;
  /** Ends the session with the transport's code for `why`; idempotent. */
  end(why: SessionEnd, reason: string): void;
}

/** Told about each session as it registers (after the transport accepted it, before its first frame). */
export type SessionListener = (s: LiveSession) => void;

/**
 * The per-node registry of live sessions, indexed by org: WebSocket and MQTT register into it, and
 * revocation (later suspension and presence) looks sessions up here instead of reaching into a
 * transport. Lookups by org cost the org's sessions, never the node's.
 */
export class SessionRegistry {
  private readonly byOrg = new Map<string, Set<LiveSession>>();
  private readonly listeners: SessionListener[] = [];
  private count = 0;

  /**
   * Registers `s` under its principal's org, then tells every listener (which may end it at once:
   * a revocation that arrived while the token was being verified).
   */
  add(s: LiveSession): void {
    const org = s.principal.org;
    let set = this.byOrg.get(org);
    if (!set) this.byOrg.set(org, (set = new Set()));
    if (set.has(s)) return;
    set.add(s);
    this.count++;
    for (const l of this.listeners) l(s);
  }

  /** Idempotent; `org` is the org the session was registered under (a principal never changes org). */
  remove(s: LiveSession): void {
    const org = s.principal.org;
    const set = this.byOrg.get(org);
    if (!set || !set.delete(s)) return;
    this.count--;
    if (set.size === 0) this.byOrg.delete(org);
  }

  /** A snapshot of the org's sessions (safe to end sessions while iterating it). */
  inOrg(org: string): LiveSession[] {
    const set = this.byOrg.get(org);
    return set ? [...set] : [];
  }

  onAdd(l: SessionListener): () => void {
    this.listeners.push(l);
    return () => {
      const i = this.listeners.indexOf(l);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  get size(): number {
    return this.count;
  }
}
