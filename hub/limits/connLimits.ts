import type { Transport } from '../core/context.ts';
import type { Lease } from './leases.ts';
import type { LimitName } from './limitService.ts';
import type { TierLimits } from './tiers.ts';
import type { LocalBucket } from './tokenBucket.ts';

/** What a transport asks about one connection (or one HTTP request) on its message path. */
export interface RateLimits {
  /**
   * 0 when `n` publishes may go now (their tokens are taken), else ms until a retry may succeed.
   * `n` > 1 (an HTTP batch) passes when one token is there at each level and leaves the rest as
   * debt that later refills repay, so a batch larger than a bucket is slowed, never stuck.
   */
  publish(n?: number): number;
  /** Same for a recorded command. */
  command(): number;
  /** The tier's largest message payload in bytes. */
  readonly maxMessageBytes: number;
  /** The tier's in-flight command bound per connection. */
  readonly inflightCommands: number;
  /** True once the refusals of the last 10 s passed ORGHUB_LIMITS_ABUSE: close the connection. */
  abusive(): boolean;
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
  }

  publish(n = 1): number {
    return this.check(this.levels.pub, 'rate_publish', n);
  }

  command(): number {
    return this.check(this.levels.cmd, 'rate_command', 1);
  }

  private check(l: Levels, name: LimitName, n: number): number {
    const [conn, user, org] = l;
    const now = performance.now();
    const w = Math.max(conn ? conn.wait(1, now) : 0, user ? user.wait(now) : 0, org ? org.wait(now) : 0);
    if (w > 0) {
      this.deny(name, now);
      return w;
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

  abusive(): boolean {
    return this.abuseDenials > 0 && this.denials > this.abuseDenials && performance.now() - this.windowStart <= ABUSE_WINDOW_MS;
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
