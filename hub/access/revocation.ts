import type { Principal } from '../auth/principal.ts';
import { HubError } from '../errors.ts';

/**
 * One revocation, as stored in Redis and announced between nodes. `until` (ms since the epoch) is
 * when the rule can be forgotten: every token it can match has expired by then, because no token
 * lives longer than ORGHUB_JWT_MAX_TTL (enforced at verification).
 */
export type RevocationRule =
  | { kind: 'jti'; org: string; jti: string; until: number }
  /** Every token of `sub` with `iat < issuedBefore` (seconds); a token without `iat` always matches. */
  | { kind: 'sub'; org: string; sub: string; issuedBefore: number; until: number }
  /** One live session, by the hub-assigned session id. */
  | { kind: 'session'; org: string; session: string; until: number };

/** The body of POST /v1/revocations: exactly one of these shapes (docs/access.md). */
export type RevocationRequest = { jti: string } | { sub: string; issuedBefore?: number } | { session: string };

const MAX_ID = 256;
/** No control characters (they would corrupt logs and the store's member separator). */
const CONTROL_RE = /[\u0000-\u001f\u007f]/;
/** A lone surrogate (not well-formed Unicode: it cannot be stored or compared reliably). */
const LONE_SURROGATE_RE = /\p{Cs}/u;

function id(v: unknown, name: string): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_ID || CONTROL_RE.test(v) || LONE_SURROGATE_RE.test(v)) {
    throw new HubError('invalid', `${name} must be a string of 1-${MAX_ID} characters, without control characters`);
  }
  return v;
}

/**
 * Validates a request body and turns it into a rule for `org` at `nowMs`. `{sub}` alone means
 * "every token issued up to now" (issuedBefore = the next whole second, so a token minted in the
 * same second is included). `issuedBefore` may not lie in the future: that would lock the user out
 * of tokens not yet issued.
 */
export function ruleFromRequest(org: string, body: unknown, nowMs: number, maxTtlSec: number): RevocationRule {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HubError('invalid', 'body must be a JSON object');
  const b = body as Record<string, unknown>;
  const keys = Object.keys(b).sort().join(',');
  const maxUntil = nowMs + maxTtlSec * 1000;
  switch (keys) {
    case 'jti':
      return { kind: 'jti', org, jti: id(b.jti, 'jti'), until: maxUntil };
    case 'session':
      return { kind: 'session', org, session: id(b.session, 'session'), until: maxUntil };
    case 'sub':
      return { kind: 'sub', org, sub: id(b.sub, 'sub'), issuedBefore: Math.floor(nowMs / 1000) + 1, until: maxUntil };
    case 'issuedBefore,sub': {
      const ib = b.issuedBefore;
      if (typeof ib !== 'number' || !Number.isInteger(ib) || ib < 0) throw new HubError('invalid', 'issuedBefore must be an integer (seconds since the epoch)');
      if (ib * 1000 > nowMs + 1000) throw new HubError('invalid', 'issuedBefore may not be in the future');
      // Tokens issued before `ib` all expire by ib + max TTL: the rule is kept that long, no longer.
      return { kind: 'sub', org, sub: id(b.sub, 'sub'), issuedBefore: ib, until: Math.min(maxUntil, ib * 1000 + maxTtlSec * 1000) };
    }
    default:
      throw new HubError('invalid', 'body must be exactly one of {jti}, {sub}, {session} or {sub, issuedBefore}');
  }
}

/** Parses a rule from Redis or NATS; undefined for anything malformed (never trusted blindly). */
export function parseRule(v: unknown): RevocationRule | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const r = v as Record<string, unknown>;
  if (typeof r.org !== 'string' || typeof r.until !== 'number' || !Number.isFinite(r.until)) return undefined;
  const ok = (s: unknown) => typeof s === 'string' && s.length > 0 && s.length <= MAX_ID;
  if (r.kind === 'jti' && ok(r.jti)) return { kind: 'jti', org: r.org, jti: r.jti as string, until: r.until };
  if (r.kind === 'session' && ok(r.session)) return { kind: 'session', org: r.org, session: r.session as string, until: r.until };
  if (r.kind === 'sub' && ok(r.sub) && typeof r.issuedBefore === 'number' && Number.isFinite(r.issuedBefore)) {
    return { kind: 'sub', org: r.org, sub: r.sub as string, issuedBefore: r.issuedBefore, until: r.until };
  }
  return undefined;
}

/** The rule's identity within its org: a second rule with the same identity replaces the first. */
export function ruleMember(r: RevocationRule): string {
  switch (r.kind) {
    case 'jti':
      return `jti:${r.jti}`;
    case 'sub':
      return `sub:${r.sub}`;
    case 'session':
      return `session:${r.session}`;
  }
}

interface OrgRules {
  jti: Map<string, number>;
  sub: Map<string, { issuedBefore: number; until: number }>;
  session: Map<string, number>;
}

/**
 * The in-memory copy every node checks against: three maps per org, so a check is a few hash
 * lookups whatever the number of rules. Merging keeps the stronger of two rules (the later
 * `issuedBefore`, the later `until`), so replays and out-of-order delivery change nothing.
 */
export class RevocationList {
  private readonly orgs = new Map<string, OrgRules>();

  /** Adds or strengthens a rule; returns false when it changed nothing (already known or expired). */
  add(r: RevocationRule, nowMs = Date.now()): boolean {
    if (r.until <= nowMs) return false;
    let o = this.orgs.get(r.org);
    if (!o) this.orgs.set(r.org, (o = { jti: new Map(), sub: new Map(), session: new Map() }));
    if (r.kind === 'sub') {
      const cur = o.sub.get(r.sub);
      if (cur && cur.issuedBefore >= r.issuedBefore && cur.until >= r.until) return false;
      o.sub.set(r.sub, { issuedBefore: Math.max(r.issuedBefore, cur?.issuedBefore ?? 0), until: Math.max(r.until, cur?.until ?? 0) });
      return true;
    }
    const map = r.kind === 'jti' ? o.jti : o.session;
    const key = r.kind === 'jti' ? r.jti : r.session;
    const cur = map.get(key);
    if (cur !== undefined && cur >= r.until) return false;
    map.set(key, r.until);
    return true;
  }

  /** True when the principal's token, or the session, is revoked. */
  isRevoked(p: Principal, session?: string, nowMs = Date.now()): boolean {
    const o = this.orgs.get(p.org);
    if (!o) return false;
    if (p.jti !== undefined) {
      const until = o.jti.get(p.jti);
      if (until !== undefined && until > nowMs) return true;
    }
    const s = o.sub.get(p.sub);
    if (s && s.until > nowMs && (p.iat === undefined || p.iat < s.issuedBefore)) return true;
    if (session !== undefined) {
      const until = o.session.get(session);
      if (until !== undefined && until > nowMs) return true;
    }
    return false;
  }

  /** Forgets expired rules (memory stays bounded by the rules still in force). */
  prune(nowMs = Date.now()): void {
    for (const [org, o] of this.orgs) {
      for (const [k, until] of o.jti) if (until <= nowMs) o.jti.delete(k);
      for (const [k, v] of o.sub) if (v.until <= nowMs) o.sub.delete(k);
      for (const [k, until] of o.session) if (until <= nowMs) o.session.delete(k);
      if (o.jti.size + o.sub.size + o.session.size === 0) this.orgs.delete(org);
    }
  }

  get size(): number {
    let n = 0;
    for (const o of this.orgs.values()) n += o.jti.size + o.sub.size + o.session.size;
    return n;
  }
}
