import type { Principal } from '../auth/principal.ts';
import type { Transport } from '../core/context.ts';
import type { Logger } from '../log.ts';
import { chunkFor, Lease } from './leases.ts';
import { bucketKey, slotKey, type BucketSpec, type Grant, type Limiter, type SlotWant } from './limiter.ts';
import { createMemoryLimiter } from './memoryLimiter.ts';
import { bucketSpec, type TierLimits, type TierTable } from './tiers.ts';
import { LocalBucket } from './tokenBucket.ts';
import { ConnLimits, NO_LIMITS, type RateLimits } from './connLimits.ts';
import type { OrgTierSource } from './orgTiers.ts';

export interface LimitServiceOptions {
  enabled: boolean;
  tiers: TierTable;
  /** The cluster-wide store (Redis); the service falls back to local buckets while it fails. */
  cluster: Limiter;
  nodeId: string;
  /** Prefix of every Redis key (ORGHUB_LIMITS_PREFIX). */
  prefix: string;
  /** Connections per IP address across the cluster, counted before authentication (0 = off). */
  perIp: number;
  /** Refusals within 10 s after which a connection is closed (0 = never). */
  abuseDenials: number;
  /** Each lease takes about this many ms of a bucket's rate. */
  leaseMs: number;
  /** The orgs read model's tiers and overrides (cached ORG_TTL_MS); config alone without it. */
  orgSource?: OrgTierSource & { close?(): Promise<void> };
  /** The org directory's tiers and overrides (win over the config; cached like orgSource, and forgotten on a directory change). */
  directorySource?: OrgTierSource;
  log: Logger;
}

/** How long an org's tier read from the orgs read model is used before it is read again. */
const ORG_TTL_MS = 30_000;

/** The limits that may be hit, as a bounded metric label. */
export const LIMIT_NAMES = ['rate_publish', 'rate_command', 'message_size', 'connections_ip', 'connections_org', 'connections_user', 'patterns', 'inflight_commands', 'retained_bytes', 'abuse'] as const;
export type LimitName = (typeof LIMIT_NAMES)[number];

/** A connection slot held until the connection ends. */
export interface Slot {
  readonly key: string;
}

export type Admission = { ok: true; slots: Slot[] } | { ok: false; limit: LimitName; max: number };

/**
 * A connection's own bucket at `rate`; none when the rate is 0 (unlimited). (Functions and methods
 * here, not closures in `connection()`: under tsx every named closure costs a `name`
 * defineProperty each time it is created, and `connection()` runs at every CONNECT.)
 */
function connBucket(l: TierLimits, rate: number): LocalBucket | undefined {
  return rate > 0 ? new LocalBucket(rate, bucketSpec(l, 'connection', rate).burst) : undefined;
}

const HEARTBEAT_MS = 5_000;
const NODE_TTL_MS = 15_000;
/** After a failed Redis call, the local fallback serves for this long before Redis is tried again. */
const DEGRADED_MS = 1_000;

/**
 * Rate limits, caps and quotas for every transport (docs/operations.md "Limits"). Hierarchy per
 * message: the connection's own bucket (local), then the user's and the org's (cluster-wide, served
 * from local leases). Connection slots (per IP, org, user) are cluster-wide sets in Redis whose
 * entries belong to a node and lapse with its heartbeat. While Redis fails, every node falls back
 * to local buckets and per-node counts and recovers by itself (fail open to per-node limits).
 */
export class LimitService {
  readonly enabled: boolean;
  /** Hits per `limit|transport`, for /metrics (bounded: LIMIT_NAMES × transports). */
  readonly hits = new Map<string, number>();
  /** MQTT QoS 0 messages dropped over a limit. */
  dropped = 0;
  /** Times the cluster store failed and local buckets took over. */
  fallbacks = 0;
  private readonly local = createMemoryLimiter();
  private readonly leases = new Map<string, Lease>();
  private readonly held = new Map<string, number>();
  /** org → pattern → local holders (distinct patterns per org per node). */
  private readonly patterns = new Map<string, Map<string, number>>();
  private degradedUntil = 0;
  private readonly orgRead = new Map<string, { at: number; pending?: Promise<void> }>();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly opts: LimitServiceOptions) {
    this.enabled = opts.enabled;
    this.timer = setInterval(() => this.housekeeping(), HEARTBEAT_MS);
    this.timer.unref();
    if (this.enabled) void (opts.cluster.ready?.() ?? Promise.resolve()).then(() => this.beat());
  }

  /** True while the cluster store is failing and local buckets stand in. */
  get degraded(): boolean {
    return Date.now() < this.degradedUntil;
  }

  limitsOf(org: string): TierLimits {
    return this.opts.tiers.limitsOf(org);
  }

  /**
   * Refreshes the org's tier from the orgs read model when the cached one is older than
   * ORG_TTL_MS (one query per org per 30 s at most; concurrent callers share it). Called at connect
   * and per HTTP request, never per message.
   */
  prepare(org: string): Promise<void> {
    const src = this.opts.orgSource;
    const dir = this.opts.directorySource;
    if ((!src && !dir) || !this.enabled) return Promise.resolve();
    const c = this.orgRead.get(org);
    if (c && (c.pending || performance.now() - c.at < ORG_TTL_MS)) return c.pending ?? Promise.resolve();
    const entry: { at: number; pending?: Promise<void> } = { at: performance.now() };
    entry.pending = Promise.all([src?.(org), dir?.(org)]).then(([over, fromDir]) => {
      if (src) this.opts.tiers.setDynamic(org, over);
      if (dir) this.opts.tiers.setDirectory(org, fromDir);
      entry.pending = undefined;
    });
    if (this.orgRead.size > 100_000) this.orgRead.clear();
    this.orgRead.set(org, entry);
    return entry.pending;
  }

  /**
   * The org's directory record changed (here or on another node, `orghub.ctl.access.org`): the next
   * connect or HTTP request reads its tier again instead of waiting out ORG_TTL_MS. Connections
   * already open keep the rates they were given at connect.
   */
  forget(org: string): void {
    if (this.orgRead.get(org)?.pending) return;
    this.orgRead.delete(org);
  }

  hit(limit: LimitName, transport: Transport): void {
    const k = `${limit}|${transport}`;
    this.hits.set(k, (this.hits.get(k) ?? 0) + 1);
  }

  /** Per-connection limits for an authenticated client; `NO_LIMITS` when limits are off. */
  connection(p: Principal, transport: Transport): RateLimits {
    if (!this.enabled) return NO_LIMITS;
    const l = this.limitsOf(p.org);
    // HTTP has no connection: its requests meet the user's and the org's buckets only.
    const http = transport === 'http';
    return new ConnLimits(this, transport, l, this.opts.abuseDenials, {
      pub: [http ? undefined : connBucket(l, l.publish.connection), this.leaseOf(p, l, 'pub', 'user', l.publish.user), this.leaseOf(p, l, 'pub', 'org', l.publish.org)],
      cmd: [http ? undefined : connBucket(l, l.commands.connection), this.leaseOf(p, l, 'cmd', 'user', l.commands.user), this.leaseOf(p, l, 'cmd', 'org', l.commands.org)],
    });
  }

  /** The principal's lease of the user's or the org's bucket; none when the rate is 0 (unlimited). */
  private leaseOf(p: Principal, l: TierLimits, kind: 'pub' | 'cmd', level: 'user' | 'org', rate: number): Lease | undefined {
    return rate > 0 ? this.lease(bucketKey(this.opts.prefix, kind, level, p.org, p.sub), bucketSpec(l, level, rate)) : undefined;
  }

  /** Takes a slot for a connection from `ip` (before authentication). */
  async admitIp(ip: string): Promise<Admission> {
    if (!this.enabled || this.opts.perIp <= 0) return { ok: true, slots: [] };
    // One client is one key whichever listener saw it: IPv4-mapped IPv6 is folded to IPv4.
    const key = slotKey(this.opts.prefix, 'ip', ip.startsWith('::ffff:') ? ip.slice(7) : ip);
    if ((await this.acquire([{ key, max: this.opts.perIp }])) < 0) return { ok: true, slots: [{ key }] };
    return { ok: false, limit: 'connections_ip', max: this.opts.perIp };
  }

  /**
   * Takes the org's and the user's connection slots, or neither: one call to the cluster store
   * (one script on Redis), so a CONNECT or upgrade pays one round trip here.
   */
  async admit(p: Principal): Promise<Admission> {
    if (!this.enabled) return { ok: true, slots: [] };
    await this.prepare(p.org);
    const l = this.limitsOf(p.org);
    const org = slotKey(this.opts.prefix, 'org', p.org);
    const user = slotKey(this.opts.prefix, 'user', p.org, p.sub);
    // In this order: an org at its cap is reported as such even when the user is at theirs too.
    const want = [
      { key: org, max: l.connections.org, limit: 'connections_org' as const },
      { key: user, max: l.connections.user, limit: 'connections_user' as const },
    ];
    const full = await this.acquire(want);
    if (full < 0) return { ok: true, slots: [{ key: org }, { key: user }] };
    return { ok: false, limit: want[full].limit, max: want[full].max };
  }

  /** Gives slots back (a connection closed, or a later check refused it). */
  release(slots: readonly Slot[]): void {
    for (const s of slots) {
      const n = (this.held.get(s.key) ?? 0) - 1;
      this.held.set(s.key, Math.max(0, n));
      // A failed release is repaired by the next heartbeat, which re-asserts the node's counts.
      if (!this.degraded) this.opts.cluster.release(s.key, this.opts.nodeId).catch(() => this.degrade());
    }
  }

  /** Counts one more local holder of (org, pattern); false when it is a new pattern past the org's cap. */
  holdPattern(org: string, pattern: string): boolean {
    let m = this.patterns.get(org);
    const n = m?.get(pattern) ?? 0;
    if (n === 0 && this.enabled && (m?.size ?? 0) >= this.limitsOf(org).patternsPerNode) return false;
    if (!m) this.patterns.set(org, (m = new Map()));
    m.set(pattern, n + 1);
    return true;
  }

  dropPattern(org: string, pattern: string): void {
    const m = this.patterns.get(org);
    const n = m?.get(pattern);
    if (!m || !n) return;
    if (n > 1) m.set(pattern, n - 1);
    else {
      m.delete(pattern);
      if (m.size === 0) this.patterns.delete(org);
    }
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.opts.cluster.close();
    await this.opts.orgSource?.close?.();
  }

  // ---- internals ----------------------------------------------------------------------------

  private lease(key: string, spec: BucketSpec): Lease {
    let l = this.leases.get(key);
    if (!l || l.spec.rate !== spec.rate || l.spec.burst !== spec.burst) {
      l = new Lease(key, spec, chunkFor(spec, this.opts.leaseMs), this.source);
      this.leases.set(key, l);
    }
    return l;
  }

  private readonly source = async (key: string, want: number, minGrant: number, spec: BucketSpec): Promise<Grant> => {
    if (!this.degraded) {
      try {
        return await this.opts.cluster.take(key, want, minGrant, spec);
      } catch (err) {
        this.degrade(err);
      }
    }
    return this.local.take(key, want, minGrant, spec);
  };

  /**
   * Takes one holder in every slot set of `want`, or in none: -1 when taken, else the index of the
   * first set at its cap. Sets without a cap (max ≤ 0) are counted on this node only. While Redis
   * fails, this node's own counts stand in for the cluster's.
   */
  private async acquire(want: readonly SlotWant[]): Promise<number> {
    const capped = want.filter((s) => s.max > 0);
    let full: number;
    if (capped.length === 0) full = -1;
    else if (this.degraded) full = this.fullHere(want);
    else {
      try {
        const at = await this.opts.cluster.acquireAll(capped, this.opts.nodeId);
        full = at < 0 ? -1 : want.indexOf(capped[at]);
      } catch (err) {
        this.degrade(err);
        full = this.fullHere(want);
      }
    }
    if (full < 0) for (const s of want) this.held.set(s.key, (this.held.get(s.key) ?? 0) + 1);
    return full;
  }

  /** `acquire` on this node's own counts (Redis failing): the index of the first capped set at its cap, else -1. */
  private fullHere(want: readonly SlotWant[]): number {
    return want.findIndex((s) => s.max > 0 && (this.held.get(s.key) ?? 0) >= s.max);
  }

  private degrade(err?: unknown): void {
    if (!this.degraded) {
      this.fallbacks++;
      this.opts.log.warn({ err: (err as Error | undefined)?.message }, 'limits: Redis failed; local buckets and per-node caps until it answers');
    }
    this.degradedUntil = Date.now() + DEGRADED_MS;
  }

  /** Heartbeat: marks this node alive and re-asserts its slot counts (repairs a restarted Redis). */
  private async beat(): Promise<void> {
    try {
      await this.opts.cluster.heartbeat(this.opts.nodeId, this.held, NODE_TTL_MS);
      this.degradedUntil = 0;
      for (const [k, n] of this.held) if (n === 0) this.held.delete(k);
    } catch (err) {
      this.degrade(err);
    }
  }

  private housekeeping(): void {
    if (!this.enabled) return;
    void this.beat();
    const now = performance.now();
    for (const [k, l] of this.leases) if (now - l.lastUse > 30_000) this.leases.delete(k);
    this.local.forget(60_000);
  }
}
