import type { ClientContext } from '../core/context.ts';
import type { LiveSession, SessionEnd } from '../core/sessions.ts';
import { sessionLog, type BridgeContext } from './bridgeContext.ts';
import { publishWill, type Will } from './sessionConnect.ts';
import type { Registrant } from './takeoverRegistry.ts';

/**
 * The Last Will of one connection and what decides its fate at close: none after a plain
 * DISCONNECT (MQTT 5 reason 0x04 asks for it all the same), none when suppressed (refused CONNECT,
 * token expiry, revocation); else published at once, or after its MQTT 5 Will Delay Interval when
 * the session outlives the connection (`DelayedWill`). A takeover by a connection that resumes the
 * session counts as a reconnection within the delay; one that starts clean ends the session, so
 * the Will goes at once (MQTT 5 §3.1.4).
 */
export class LastWill {
  private will: Will | undefined;
  private graceful = false;
  private suppressed = false;
  private takenBy: 'resume' | 'clean' | undefined;

  /** The Will accepted at CONNECT. */
  set(will: Will | undefined): void {
    this.will = will;
  }

  /** The client said DISCONNECT: no Will unless `withWill` (MQTT 5 reason 0x04). */
  disconnected(withWill: boolean): void {
    this.graceful = !withWill;
  }

  /** No Will whatever happens. */
  suppress(): void {
    this.suppressed = true;
  }

  takenOver(clean: boolean): void {
    this.takenBy = clean ? 'clean' : 'resume';
  }

  /** A DISCONNECT said goodbye (the close is not a lost connection). */
  get saidGoodbye(): boolean {
    return this.graceful;
  }

  /**
   * The open connection closed: publishes the Will now, later, or not at all. `parked`: the session
   * lives on under `key` for `expiryMs`.
   */
  onClose(ctx: BridgeContext, client: ClientContext, parked: { key: string; expiryMs: number } | undefined): void {
    const w = this.will;
    if (!w || this.graceful || this.suppressed) return;
    const delay = parked && this.takenBy !== 'clean' ? willDelayMs(w.delayS, parked.expiryMs) : 0;
    if (delay > 0 && this.takenBy === 'resume') sessionLog(ctx, client.session).info({}, 'delayed mqtt will not published: session taken over');
    else if (delay > 0) new DelayedWill(ctx, parked!.key, client, w, delay);
    else publishWill(ctx, client, w);
  }
}

/**
 * How long the Will of a connection that ended waits, in ms (MQTT 5 §3.1.3.2.2): its Will Delay
 * Interval, but never past the end of the session (`expiryMs`, 0 for a session that ends with the
 * connection), so a Will is published at the latest when its session expires. 0 = at once.
 */
export function willDelayMs(delayS: number | undefined, expiryMs: number): number {
  return Math.min((delayS ?? 0) * 1000, expiryMs, 2 ** 31 - 1);
}

/**
 * A Will waiting out its Will Delay Interval on the node where the connection ended. A new
 * connection to the same session (the same org, sub and client id, on any node: the takeover
 * registry tells) within the delay cancels it; one that starts clean ends the session, which
 * publishes it at once (MQTT 5 §3.1.2.4). Published with the identity of the connection that set
 * it, and not at all once that identity's token has expired (as a Will is suppressed at token
 * expiry). Held in memory: if this node stops during the delay, the Will is lost (docs/mqtt.md).
 * It stays in the node's session registry meanwhile, so a revocation of that identity or a
 * suspension of the org (and so offboarding, which needs one) cancels it like a live connection.
 */
export class DelayedWill implements Registrant, LiveSession {
  readonly transport = 'mqtt' as const;
  private readonly timer: NodeJS.Timeout;
  private done = false;

  constructor(
    private readonly ctx: BridgeContext,
    private readonly key: string,
    private readonly client: ClientContext,
    private readonly will: Will,
    delayMs: number,
  ) {
    this.timer = setTimeout(() => this.publish(), delayMs);
    this.timer.unref();
    ctx.takeover.watch(key, this);
    // Last: the registry's listeners may end it at once (a revocation that is already known).
    ctx.live?.add(this);
  }

  get session(): string {
    return this.client.session;
  }

  get principal(): ClientContext['principal'] {
    return this.client.principal;
  }

  /** Revoked or suspended during the delay: no Will. */
  end(why: SessionEnd, reason: string): void {
    this.cancel(`${why} during the will delay: ${reason}`);
  }

  /** The session was connected again: a resumed session cancels the Will, a clean start publishes it now. */
  takenOver(clean = false): void {
    if (clean) return this.publish();
    this.cancel('reconnected within the will delay');
  }

  private publish(): void {
    if (this.done) return;
    if (this.client.principal.exp * 1000 <= Date.now()) return this.cancel('token expired during the will delay');
    this.finish();
    publishWill(this.ctx, this.client, this.will);
  }

  private cancel(reason: string): void {
    if (this.done) return;
    this.finish();
    sessionLog(this.ctx, this.client.session).info({ reason }, 'delayed mqtt will not published');
  }

  private finish(): void {
    this.done = true;
    clearTimeout(this.timer);
    this.ctx.takeover.unwatch(this.key, this);
    this.ctx.live?.remove(this);
  }
}
