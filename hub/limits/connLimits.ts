import type { Transport } from '../core/context.ts';
import { ABUSE_STREAK, RefusalBackoff } from './backoff.ts';
import type { Lease } from './leases.ts';
import type { LimitName } from './limitService.ts';
import type { TierLimits } from './tiers.ts';
import type { LocalBucket } from './tokenBucket.ts';

/** What a transport asks about one connection (or one HTTP request) on its message path. */
export interface RateLimits {
  /**
   * 0 when `n` publishes may go now (their tokens are taken), else ms until a retry may succeed:
   * on a connection (WebSocket, MQTT) this grows while the connection keeps being refused
   * (backoff.ts), and the transport stops reading it for that long (`holding`).
   * `n` > 1 (an HTTP batch) passes when one token is there at each level and leaves the rest as
   * debt that later refills repay, so a batch larger than a bucket is slowed, never stuck.
   */
  publish(n?: number, soft?: boolean): number;
  /**
   * Same for a recorded command. `soft` (both): -1 instead of a refusal (nothing counted) when a
   * user or org lease is being refilled, so that a caller that can wait awaits `settle(kind)` and
   * asks again instead of holding a connection for a Redis round trip.
   */
  command(soft?: boolean): number;
  /** The tier's largest message payload in bytes. */
  readonly maxMessageBytes: number;
  /** The tier's in-flight command bound per connection. */
  readonly inflightCommands: number;
  /**
   * True once the refusals of the last 10 s (with the frames that arrived while held) passed
   * ORGHUB_LIMITS_ABUSE, or the connection was held ABUSE_STREAK times in a row (backoff.ts):
   * close the connection.
   * `flagrant`: the caller saw abuse itself (e.g. it kept sending while held); true whenever
   * abuse closes are on (ORGHUB_LIMITS_ABUSE > 0).
   */
  abusive(flagrant?: boolean): boolean;
  /** True while the connection is held after a refusal: its transport does not run its frames. */
  holding(now?: number): boolean;
  /**
   * A frame arrived while the connection is held (the client did not wait): it counts toward
   * ORGHUB_LIMITS_ABUSE as a refusal would have. True when the connection is now abusive.
   */
  heldFrame(): boolean;
  /** Counts a hit of `limit` (metrics). */
  hit(limit: LimitName): void;
  /**
   * Resolves once the user and org leases of `kind` hold tokens (or the cluster said when they
   * will): call at connect for `pub`, and before a command (which waits for its append anyway).
   */
  settle(kind: 'pub' | 'cmd'): Promise<void>;
  /** True while a user or org lease of `kind` is being refilled. */
  refilling(kind: 'pub' | 'cmd'): boolean;
}

/** Limits off (ORGHUB_LIMITS=off): every check passes. */
export const NO_LIMITS: RateLimits = {
  publish: () => 0,
  command: () => 0,
  maxMessageBytes: Number.MAX_SAFE_INTEGER,
  inflightCommands: Number.MAX_SAFE_INTEGER,
  abusive: () => false,
  holding: () => false,
  heldFrame: () => false,
  hit: () => {},
  settle: () => Promise.resolve(),
  refilling: () => false,
};

/** The three levels of one kind: the connection's local bucket, then the user's and org's leases. */
export type Levels = [LocalBucket | undefined, Lease | undefined, Lease | undefined];

const ABUSE_WINDOW_MS = 10_000;

/**
 * One connection's view of the hierarchy. A check looks at every level before taking from any, so
 * a refusal at the org level does not also spend the connection's token.
 */
export class ConnLimits implements RateLimits {
  private denials = 0;
  /** Growing holds for a connection that keeps being refused; none for HTTP (no connection to hold). */
  private readonly backoff: RefusalBackoff | undefined;
  private windowStart = 0;
  readonly maxMessageBytes: number;
  readonly inflightCommands: number;

  constructor(
    private readonly svc: { hit(limit: LimitName, transport: Transport): void },
    private readonly transport: Transport,
    limits: TierLimits,
    private readonly abuseDenials: number,
    private readonly levels: { pub: Levels; cmd: Levels },
  ) {
    this.maxMessageBytes = limits.maxMessageBytes;
    this.inflightCommands = limits.inflightCommands;
    this.backoff = transport === 'http' ? undefined : new RefusalBackoff();
  }

  publish(n = 1, soft = false): number {
    return this.check(this.levels.pub, 'rate_publish', n, soft);
  }

  command(soft = false): number {
    return this.check(this.levels.cmd, 'rate_command', 1, soft);
  }

  private check(l: Levels, name: LimitName, n: number, soft = false): number {
    const [conn, user, org] = l;
    const now = performance.now();
    const w = Math.max(conn ? conn.wait(1, now) : 0, user ? user.wait(now) : 0, org ? org.wait(now) : 0);
    if (w > 0) {
      if (soft && (user?.refilling || org?.refilling)) return -1;
      this.deny(name, now);
      return this.backoff ? this.backoff.refuse(now, w) : w;
    }
    conn?.take(n);
    user?.take(n);
    org?.take(n);
    return 0;
  }

  private deny(name: LimitName, now: number): void {
    this.svc.hit(name, this.transport);
    if (now - this.windowStart > ABUSE_WINDOW_MS) {
      this.windowStart = now;
      this.denials = 0;
    }
    this.denials++;
  }


  abusive(flagrant = false): boolean {
    if (this.abuseDenials <= 0) return false;
    if (flagrant) return true;
    if ((this.backoff?.streak ?? 0) >= ABUSE_STREAK) return true;
    return this.denials > this.abuseDenials && performance.now() - this.windowStart <= ABUSE_WINDOW_MS;
  }

  heldFrame(): boolean {
    const now = performance.now();
    if (now - this.windowStart > ABUSE_WINDOW_MS) {
      this.windowStart = now;
      this.denials = 0;
    }
    this.denials++;
    return this.abusive();
  }

  holding(now = performance.now()): boolean {
    return this.backoff?.holding(now) ?? false;
  }

  hit(limit: LimitName): void {
    this.svc.hit(limit, this.transport);
  }

  refilling(kind: 'pub' | 'cmd'): boolean {
    const [, user, org] = this.levels[kind];
    return !!(user?.refilling || org?.refilling);
  }

  async settle(kind: 'pub' | 'cmd'): Promise<void> {
    const [, user, org] = this.levels[kind];
    await Promise.all([user?.settle(), org?.settle()]);
  }
}
