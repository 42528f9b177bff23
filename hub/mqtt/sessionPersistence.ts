import { sessionLog, type BridgeContext } from './bridgeContext.ts';
import { clip } from './limits.ts';
import type { Version } from './outbound.ts';
import { parkSession, persistedSubs, restoreSubscriptions, resumeSession } from './sessionResume.ts';
import type { SessionPort } from './sessionPort.ts';
import { liveOwner, type Claimed, type SessionRef } from './sessionStore.ts';
import type { Registrant } from './takeoverRegistry.ts';

/** A connection while its persistent session is resumed: a port that may already be closed. */
export interface ResumingConnection extends SessionPort {
  readonly closed: boolean;
  /** Its registration in the takeover registry (released before a park). */
  takenOver: Registrant['takenOver'];
  /** Deliveries it holds (the claim runs, so none was sent), oldest first. */
  pending(): { bytes: Buffer; sent: boolean }[];
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
  /** The claim while its queue is not yet handed to the connection's deliveries (see `delivered`). */
  private unsent: Claimed | undefined;
  /**
   * `resume` runs. A connection that closes meanwhile keeps its subscriptions (holding what they
   * deliver) until `resume` returns, so that nothing published while the claim runs falls between
   * the offline queue the claim stops and the one its park starts.
   */
  resuming = false;

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
   * deliver, and then to confirm with `delivered()`: until then the session keeps it, and a close
   * parks it back (`end`). A connection that went away before the claim answered is parked at
   * once, as any close would be, with what its subscriptions held meanwhile (its new offline queue
   * keeps what is published after); 'gone' then, and the caller lets go of the subscriptions the
   * close left it (see `resuming`).
   */
  async resume(c: ResumingConnection, clean: boolean, clientId: string): Promise<Claimed | ResumeFailure> {
    this.resuming = true;
    try {
      return await this.claimAndRestore(c, clean, clientId);
    } finally {
      this.resuming = false;
    }
  }

  private async claimAndRestore(c: ResumingConnection, clean: boolean, clientId: string): Promise<Claimed | ResumeFailure> {
    const { policy } = this.ctx;
    const owner = liveOwner(this.ctx.nodeId, this.session);
    let r: Claimed | 'full';
    try {
      r = await resumeSession(this.ctx, this.ref, owner, { clean, clientId: clip(clientId) ?? '', expiryMs: this.expiryMs, maxSessions: policy.maxSessions }, async (s) => {
        await this.ctx.hooks?.resume?.('claiming', c);
        // Closed or not: from the claim on, only these subscriptions catch what is published until
        // a park starts the next offline queue (the claim stops the current one).
        await restoreSubscriptions(c, s, false);
      });
    } catch (err) {
      sessionLog(this.ctx, this.session).warn({ err: (err as Error).message }, 'mqtt session store unavailable at CONNECT');
      return 'unavailable';
    }
    if (r === 'full') return 'full';
    // From here the claim is held: every way out either delivers it or parks it back.
    this.owner = owner;
    this.unsent = r;
    await this.ctx.hooks?.resume?.('answered', c);
    if (c.closed) {
      // Its close came before the claim answered, so it had nothing to park: park now, as a close
      // would, with what its subscriptions held meanwhile (the offline queue the claim stopped
      // could no longer append it).
      this.park(c.version, c, c.pending());
      return 'gone';
    }
    await this.ctx.hooks?.resume?.('claimed', c);
    await restoreSubscriptions(c, r.session, true);
    // Closed meanwhile: `end` parked the claim with the connection.
    if (c.closed) return 'gone';
    for (const id of r.session.qos2) c.qos2.add(id);
    return r;
  }

  /** The claimed queue is now in the connection's deliveries (a later close parks it from there). */
  delivered(): void {
    this.unsent = undefined;
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
   * 0, else parks it with its unacknowledged deliveries, and with the claimed queue when the close
   * came before it was delivered. Returns whether the session lives on.
   */
  end(conn: { version: Version; subs: ReadonlyMap<string, 0 | 1>; qos2: Iterable<number>; pending: { bytes: Buffer; sent: boolean }[]; registrant: Registrant }): boolean {
    if (!this.owner) return false;
    if (this.expiryMs === 0) {
      this.owner = '';
      this.unsent = undefined;
      this.ctx.store.discard(this.ref).catch((err) => sessionLog(this.ctx, this.session).warn({ err: (err as Error).message }, 'stored mqtt session not discarded'));
      return false;
    }
    this.park(conn.version, conn.registrant, conn.pending, conn.subs, conn.qos2);
    return true;
  }

  /**
   * Parks the held session (docs/mqtt.md "Sessions"): an offline queue on this node takes its
   * subscriptions, the store its state. An undelivered claim goes back as it was claimed: its
   * stored filters and QoS 2 ids, its queue ahead of `pending`.
   */
  private park(version: Version, registrant: Registrant, pending: { bytes: Buffer; sent: boolean }[], subs?: ReadonlyMap<string, 0 | 1>, qos2: Iterable<number> = []): void {
    const { owner, unsent } = this;
    // Parked once: the connection holds the session no more (its teardown may run twice).
    this.owner = '';
    this.unsent = undefined;
    // This connection leaves the registry first, so that the offline queue sees only a newer one.
    this.ctx.takeover.release(this.ref.key, registrant);
    const parkedSubs = unsent ? new Map(Object.entries(unsent.session.subs)) : new Map(subs);
    const parkedQos2 = unsent ? [...new Set([...unsent.session.qos2, ...qos2])] : qos2;
    // Parked before leaving the fan-out: its offline queue takes the subscriptions over first.
    parkSession(this.ctx, { ref: this.ref, session: this.session, owner, version, subs: parkedSubs, qos2: parkedQos2, queued: unsent?.messages ?? [], pending, expiryMs: this.expiryMs });
  }
}
