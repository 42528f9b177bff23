import { sessionLog, type BridgeContext } from './bridgeContext.ts';
import { clip } from './limits.ts';
import type { Version } from './outbound.ts';
import { parkSession, persistedSubs, restoreSubscriptions, resumeSession } from './sessionResume.ts';
import type { SessionPort } from './sessionPort.ts';
import { liveOwner, type Claimed, type SessionRef } from './sessionStore.ts';

/** A connection while its persistent session is resumed: a port that may already be closed. */
export interface ResumingConnection extends SessionPort {
  readonly closed: boolean;
}

/** Why resuming gave no session: the org is at its cap, the store is down, or the connection went away meanwhile. */
export type ResumeFailure = 'full' | 'unavailable' | 'gone';

/**
 * The persistent-session side of one MQTT connection (docs/mqtt.md "Sessions"): resumes (or
 * creates) the stored session at CONNECT, stores subscription changes while connected, and at
 * close parks the session (an offline queue on this node takes its subscriptions over) or
 * discards it when its expiry is 0. Ownership in the store is by an owner token of this
 * connection; a clean (non-persistent) connection has none of this.
 */
export class PersistentSession {
  /** Owner token once the session is claimed ('' before, and for a clean connection). */
  private owner = '';

  constructor(
    private readonly ctx: BridgeContext,
    readonly ref: SessionRef,
    /** Connection id. */
    private readonly session: string,
    /** Session expiry once the connection ends, ms; a DISCONNECT may change it (0 ends the session). */
    public expiryMs: number,
  ) {}

  /** The session is claimed by this connection. */
  get held(): boolean {
    return this.owner !== '';
  }

  /**
   * Waits for an older holder to park the session, subscribes `c` to its stored filters, claims it
   * and restores its subscriptions and QoS 2 state on `c`. The claimed queue is for the caller to
   * deliver. A connection that went away meanwhile hands the claimed session straight back.
   */
  async resume(c: ResumingConnection, clean: boolean, clientId: string): Promise<Claimed | ResumeFailure> {
    const { policy } = this.ctx;
    const owner = liveOwner(this.ctx.nodeId, this.session);
    let r: Claimed | 'full';
    try {
      r = await resumeSession(this.ctx, this.ref, owner, { clean, clientId: clip(clientId) ?? '', expiryMs: this.expiryMs, maxSessions: policy.maxSessions }, (s) => (c.closed ? Promise.resolve() : restoreSubscriptions(c, s, false)));
    } catch (err) {
      sessionLog(this.ctx, this.session).warn({ err: (err as Error).message }, 'mqtt session store unavailable at CONNECT');
      return 'unavailable';
    }
    if (r === 'full') return 'full';
    if (c.closed) {
      // Gone while resuming: hand the claimed session straight back, nothing lost.
      void this.ctx.store.park(this.ref, owner, '', { subs: r.session.subs, qos2: r.session.qos2, pending: r.messages, expiryMs: this.expiryMs, maxQueue: policy.maxQueue }).catch(() => {});
      return 'gone';
    }
    this.owner = owner;
    await restoreSubscriptions(c, r.session, true);
    for (const id of r.session.qos2) c.qos2.add(id);
    return r;
  }

  /** MQTT 5 §3.14.2.2.2: a DISCONNECT may change the session's expiry (capped; 0 ends it at close). */
  disconnectExpiry(intervalS: number | undefined): void {
    if (this.owner && intervalS !== undefined) this.expiryMs = Math.min(intervalS, this.ctx.policy.maxExpiryS) * 1000;
  }

  /** Stores the subscriptions of the connected session (best effort: a failure is logged). */
  storeSubscriptions(subs: ReadonlyMap<string, 0 | 1>): void {
    if (!this.owner) return;
    this.ctx.store.setSubscriptions(this.ref, this.owner, persistedSubs(subs)).catch((err) => {
      sessionLog(this.ctx, this.session).warn({ err: (err as Error).message }, 'mqtt subscriptions not stored');
    });
  }

  /**
   * The connection ended (call before it leaves the fan-out): discards a session whose expiry is
   * 0, else parks it with its unacknowledged deliveries. Returns whether the session lives on.
   */
  end(conn: { version: Version; subs: ReadonlyMap<string, 0 | 1>; qos2: Iterable<number>; pending: { bytes: Buffer; sent: boolean }[]; registrant: Parameters<BridgeContext['takeover']['release']>[1] }): boolean {
    if (!this.owner) return false;
    if (this.expiryMs === 0) {
      this.ctx.store.discard(this.ref).catch((err) => sessionLog(this.ctx, this.session).warn({ err: (err as Error).message }, 'stored mqtt session not discarded'));
      return false;
    }
    // This connection leaves the registry first, so that the offline queue sees only a newer one.
    this.ctx.takeover.release(this.ref.key, conn.registrant);
    // Parked before leaving the fan-out: its offline queue takes the subscriptions over first.
    parkSession(this.ctx, { ref: this.ref, session: this.session, owner: this.owner, version: conn.version, subs: new Map(conn.subs), qos2: conn.qos2, pending: conn.pending, expiryMs: this.expiryMs });
    return true;
  }
}
