import { Ajv } from 'ajv';
import { ConfigError } from '../errors.ts';
import type { BucketSpec } from './limiter.ts';

/** Service tiers; an org without an override gets ORGHUB_LIMITS_TIER. */
export const TIERS = ['free', 'standard', 'enterprise'] as const;
export type Tier = (typeof TIERS)[number];

/** Rates in messages (or commands) per second at each level of the hierarchy. 0 = unlimited. */
export interface RateLevels {
  connection: number;
  user: number;
  org: number;
}

/**
 * Every limit one org is held to. Connection and user buckets hold `burstSeconds` worth of their
 * rate, so a quiet device may send that many seconds of traffic at once before the rate applies;
 * the org's buckets hold only `orgBurstSeconds`, so the org's aggregate stays near its rate.
 */
export interface TierLimits {
  /** Publishes (WebSocket `pub`, HTTP publish, MQTT PUBLISH) per second. */
  publish: RateLevels;
  /** Recorded commands (WebSocket `cmd`, HTTP /v1/commands, MQTT `$cmd/`) per second. */
  commands: RateLevels;
  /** Seconds of its rate a connection's or user's bucket holds (publishes and commands). */
  burstSeconds: number;
  /**
   * Seconds of its rate the org's buckets hold (publishes and commands): small, so that an org's
   * flood cannot spend seconds of its rate at the hub's full speed and crowd out other orgs
   * (docs/benchmarks.md "Tenant fairness"). A single device keeps `burstSeconds` while the org
   * has headroom.
   */
  orgBurstSeconds: number;
  /** Open connections (WebSocket + MQTT) across the cluster. 0 = unlimited. */
  connections: { org: number; user: number };
  /** Largest message payload in bytes. */
  maxMessageBytes: number;
  /** Distinct subscription patterns held by the org's clients on one node. */
  patternsPerNode: number;
  /** Bytes of retained MQTT messages per org (payload + topic), across the cluster. */
  retainedBytes: number;
  /** Commands awaiting their durable ack on one connection. */
  inflightCommands: number;
  /**
   * The org's share of each group-commit batch relative to other orgs with appends waiting
   * (hub/eventstore/fairShare.ts): with weights 4 and 1, two flooding orgs get 4/5 and 1/5.
   */
  commitWeight: number;
}

/**
 * Documented defaults (docs/operations.md "Limits"). `standard` is generous enough that one
 * dashboard or backend connection is never throttled in normal use; `free` is for trials.
 */
export const TIER_DEFAULTS: Readonly<Record<Tier, TierLimits>> = {
  free: {
    publish: { connection: 20, user: 50, org: 200 },
    commands: { connection: 5, user: 10, org: 50 },
    burstSeconds: 2,
    orgBurstSeconds: 0.25,
    connections: { org: 100, user: 10 },
    maxMessageBytes: 16 * 1024,
    patternsPerNode: 1_000,
    retainedBytes: 1024 * 1024,
    inflightCommands: 10,
    commitWeight: 1,
  },
  standard: {
    publish: { connection: 2_000, user: 5_000, org: 50_000 },
    commands: { connection: 2_000, user: 5_000, org: 50_000 },
    burstSeconds: 2,
    orgBurstSeconds: 0.25,
    connections: { org: 20_000, user: 200 },
    maxMessageBytes: 64 * 1024,
    patternsPerNode: 20_000,
    retainedBytes: 64 * 1024 * 1024,
    // Group commit makes a deep pipeline the fast way to send commands: a backend may keep
    // thousands in flight on one connection (hub/commands/failure.int.test.ts keeps 3000).
    inflightCommands: 4_000,
    commitWeight: 2,
  },
  enterprise: {
    publish: { connection: 20_000, user: 50_000, org: 1_000_000 },
    commands: { connection: 20_000, user: 50_000, org: 500_000 },
    burstSeconds: 2,
    orgBurstSeconds: 0.25,
    connections: { org: 1_000_000, user: 2_000 },
    maxMessageBytes: 1024 * 1024,
    patternsPerNode: 200_000,
    retainedBytes: 1024 * 1024 * 1024,
    inflightCommands: 20_000,
    commitWeight: 4,
  },
};

/**
 * The bucket of one level for `rate` (> 0): `burstSeconds` of it for a connection or a user,
 * `orgBurstSeconds` for the org; at least 1 token, so a rate below one per burst still passes.
 */
export function bucketSpec(l: TierLimits, level: keyof RateLevels, rate: number): BucketSpec {
  return { rate, burst: Math.max(1, rate * (level === 'org' ? l.orgBurstSeconds : l.burstSeconds)) };
}

const rate = { type: 'number', minimum: 0, maximum: 1e9 };
const levels = { type: 'object', properties: { connection: rate, user: rate, org: rate }, additionalProperties: false };
const count = { type: 'integer', minimum: 0, maximum: 1e12 };
/** A partial TierLimits: every field optional, nothing unknown. Its leaves also check the org directory's `limits` (directoryTiers.ts). */
export const partialLimits = {
  type: 'object',
  properties: {
    publish: levels,
    commands: levels,
    burstSeconds: { type: 'number', minimum: 0.01, maximum: 3600 },
    orgBurstSeconds: { type: 'number', minimum: 0.01, maximum: 3600 },
    connections: { type: 'object', properties: { org: count, user: count }, additionalProperties: false },
    maxMessageBytes: { type: 'integer', minimum: 1, maximum: 268435455 },
    patternsPerNode: { type: 'integer', minimum: 1, maximum: 1e9 },
    retainedBytes: count,
    inflightCommands: { type: 'integer', minimum: 1, maximum: 1e6 },
    commitWeight: { type: 'integer', minimum: 1, maximum: 1000 },
  },
  additionalProperties: false,
};
const tiersSchema = { type: 'object', propertyNames: { enum: TIERS }, additionalProperties: partialLimits };
const orgsSchema = {
  type: 'object',
  propertyNames: { pattern: '^[A-Za-z0-9_-]{1,64}$' },
  additionalProperties: { ...partialLimits, properties: { ...partialLimits.properties, tier: { enum: TIERS } } },
};
const ajv = new Ajv({ allErrors: true });
const validateTiers = ajv.compile(tiersSchema);
const validateOrgs = ajv.compile(orgsSchema);
const validateOne = ajv.compile(orgsSchema.additionalProperties);

/** Why one org override (from the orgs read model) is invalid, or undefined when it is valid. */
export function validateOrgOverride(v: unknown): string | undefined {
  if (validateOne(v)) return undefined;
  const e = validateOne.errors?.[0];
  return `${e?.instancePath || '/'} ${e?.message ?? 'is invalid'}`;
}

export type PartialLimits = Partial<Omit<TierLimits, 'publish' | 'commands' | 'connections'>> & {
  publish?: Partial<RateLevels>;
  commands?: Partial<RateLevels>;
  connections?: Partial<TierLimits['connections']>;
};
export type OrgOverride = PartialLimits & { tier?: Tier };

function parseJson(name: string, text: string, validate: ReturnType<typeof ajv.compile>): Record<string, unknown> {
  if (!text) return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new ConfigError(`${name} is not valid JSON`);
  }
  if (!validate(v)) {
    const e = validate.errors?.[0];
    throw new ConfigError(`${name}${e?.instancePath ?? ''} ${e?.message ?? 'is invalid'}`);
  }
  return v as Record<string, unknown>;
}

/** Validates ORGHUB_LIMITS_TIERS (`{"free":{...partial}}`); throws ConfigError naming the path. */
export function parseTierOverrides(text: string): Partial<Record<Tier, PartialLimits>> {
  return parseJson('ORGHUB_LIMITS_TIERS', text, validateTiers) as Partial<Record<Tier, PartialLimits>>;
}

/** Validates ORGHUB_LIMITS_ORGS (`{"<org>":{"tier":"free",...partial}}`). */
export function parseOrgOverrides(text: string): Record<string, OrgOverride> {
  return parseJson('ORGHUB_LIMITS_ORGS', text, validateOrgs) as Record<string, OrgOverride>;
}

/** `base` with the fields of `over` replaced (one level deep for the nested objects). */
export function mergeLimits(base: TierLimits, over: PartialLimits | undefined): TierLimits {
  if (!over) return base;
  return {
    ...base,
    ...over,
    publish: { ...base.publish, ...over.publish },
    commands: { ...base.commands, ...over.commands },
    connections: { ...base.connections, ...over.connections },
  } as TierLimits;
}

/**
 * Resolves an org's limits: its tier (override, else the default tier), the tier's defaults with
 * ORGHUB_LIMITS_TIERS over them, then the org's own fields. Results are cached per org.
 */
export class TierTable {
  private readonly tiers: Record<Tier, TierLimits>;
  private readonly cache = new Map<string, TierLimits>();
  private readonly dynamic = new Map<string, OrgOverride>();
  private readonly directory = new Map<string, OrgOverride>();

  constructor(
    private readonly defaultTier: Tier,
    tierOverrides: Partial<Record<Tier, PartialLimits>> = {},
    private readonly orgs: Record<string, OrgOverride> = {},
  ) {
    this.tiers = Object.fromEntries(TIERS.map((t) => [t, mergeLimits(TIER_DEFAULTS[t], tierOverrides[t])])) as Record<Tier, TierLimits>;
  }

  tierOf(org: string): Tier {
    return this.directory.get(org)?.tier ?? this.orgs[org]?.tier ?? this.dynamic.get(org)?.tier ?? this.defaultTier;
  }

  limitsOf(org: string): TierLimits {
    let l = this.cache.get(org);
    if (!l) {
      const dyn = this.dynamic.get(org);
      const over = this.orgs[org];
      const dir = this.directory.get(org);
      // The org directory (the platform API) wins over the config (ORGHUB_LIMITS_ORGS, the
      // fallback), which wins over the orgs read model's settings.limits; all over the tier's defaults.
      const tier = dir?.tier ?? over?.tier ?? dyn?.tier ?? this.defaultTier;
      l = mergeLimits(mergeLimits(mergeLimits(this.tiers[tier], dyn), over), dir);
      if (this.cache.size > 100_000) this.cache.clear();
      this.cache.set(org, l);
    }
    return l;
  }

  /** Sets (or clears) an org's tier and overrides from the orgs read model. */
  setDynamic(org: string, over: OrgOverride | undefined): void {
    this.set(this.dynamic, org, over);
  }

  /** Sets (or clears) an org's tier and overrides from the org directory (they win over the config). */
  setDirectory(org: string, over: OrgOverride | undefined): void {
    this.set(this.directory, org, over);
  }

  private set(map: Map<string, OrgOverride>, org: string, over: OrgOverride | undefined): void {
    const before = map.get(org);
    if (JSON.stringify(before) === JSON.stringify(over)) return;
    if (over) map.set(org, over);
    else map.delete(org);
    if (map.size > 100_000) map.clear();
    this.cache.delete(org);
  }
}
