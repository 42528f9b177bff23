import { fileURLToPath } from 'node:url';
import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey, type JWTVerifyOptions } from 'jose';
import type { Config } from '../config/config.ts';
import { AuthError, ConfigError, HubError } from '../errors.ts';
import { JWKS_ALGS, loadJwksFile, type JwksAlg, type KeyRing } from './jwks.ts';
import type { GrantSpec, Principal, TokenVerifier } from './principal.ts';

/**
 * Token verification with jose. Every header check that picks a key happens here, before jose
 * sees the token, so the key is a function of the header `alg`: HS256 only ever gets the
 * configured secret, the JWKS algorithms only ever get a key imported for exactly that alg, and
 * each jwtVerify call allows exactly that one alg. Nothing a token names is ever fetched.
 */

export interface JoseVerifierOptions {
  /** Re-read a JWKS file on SIGHUP (a URL JWKS refreshes itself). Default false: no signal handler. */
  reloadOnSighup?: boolean;
  /** URL JWKS: request timeout in ms (default 5000). */
  jwksTimeoutMs?: number;
  /** URL JWKS: least time between refetches on an unknown kid, ms (default 30000). */
  jwksCooldownMs?: number;
  /** URL JWKS: refetch after this many ms even without an unknown kid (default 600000). */
  jwksMaxAgeMs?: number;
  /** Told about JWKS keys that were skipped, and about failed SIGHUP reloads. */
  onWarning?: (message: string) => void;
}

export interface JoseVerifier extends TokenVerifier {
  /** Re-reads a JWKS file (or refetches a URL JWKS). A failed reload keeps the previous keys. */
  reload(): Promise<void>;
  close(): void;
}

/** Org ids starting with `_` are reserved for the hub itself (`_unauthenticated` holds pre-auth refusals). */
const ORG_RE = /^[A-Za-z0-9-][A-Za-z0-9_-]{0,63}$/;
/** An empty signature is let through so that `alg: none` is refused by name, not as malformed. */
const COMPACT_RE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const MAX_SUB = 128;
const MAX_JTI = 256;
/** Headers that embed a key or point at one; honouring any of them lets the token pick its own key. */
const KEY_HEADERS = ['jwk', 'jku', 'x5u', 'x5c'] as const;
const EMPTY_ROLES: readonly string[] = Object.freeze([]);
/** Claim names jose can report; anything else is reported as `unknown` so a reason never echoes input. */
const KNOWN_CLAIMS = new Set(['iss', 'aud', 'sub', 'exp', 'nbf', 'iat', 'jti', 'typ']);

type HeaderAlg = JwksAlg | 'HS256';

/** Reads a compact JWT's protected header, or undefined if it is not a base64url JSON object. */
function parseHeader(seg: string): Record<string, unknown> | undefined {
  // The caller has checked the charset (COMPACT_RE), so Buffer's lenient decoder yields exactly the
  // bytes jose's strict one will: both parsers see the same header.
  try {
    const h: unknown = JSON.parse(Buffer.from(seg, 'base64url').toString('utf8'));
    return typeof h === 'object' && h !== null && !Array.isArray(h) ? (h as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function claimName(c: string): string {
  return KNOWN_CLAIMS.has(c) ? c : 'unknown';
}

/** Maps jose's error classes onto short, stable reasons. Errors we raised ourselves pass through. */
export function mapJoseError(err: unknown): HubError {
  if (err instanceof HubError) return err;
  const opts = { cause: err };
  if (err instanceof errors.JWTExpired) return new AuthError('token_expired', opts);
  if (err instanceof errors.JWTClaimValidationFailed) {
    const claim = claimName(err.claim);
    if (err.reason === 'missing') return new AuthError(`missing_claim:${claim}`, opts);
    if (err.reason === 'check_failed') {
      if (claim === 'iss') return new AuthError('bad_issuer', opts);
      if (claim === 'aud') return new AuthError('bad_audience', opts);
      if (claim === 'nbf') return new AuthError('token_not_yet_valid', opts);
    }
    return new AuthError(`bad_claim:${claim}`, opts);
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) return new AuthError('bad_signature', opts);
  if (err instanceof errors.JOSEAlgNotAllowed) return new AuthError('alg_not_allowed', opts);
  if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) {
    return new AuthError('unknown_kid', opts);
  }
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid || err instanceof errors.JOSENotSupported) {
    return new AuthError('token_malformed', opts);
  }
  // Fail closed: anything unexpected refuses the token; the cause stays for the log.
  return new AuthError('token_invalid', opts);
}

function parseStringList(v: unknown): boolean {
  if (!Array.isArray(v)) return false;
  for (const s of v) if (typeof s !== 'string') return false;
  return true;
}

/** The `acl` claim, checked strictly: a typo such as `publish` is refused rather than ignored. */
function parseAcl(v: unknown): GrantSpec | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  for (const k in v) {
    const val = (v as Record<string, unknown>)[k];
    if (k === 'pub' || k === 'sub' || k === 'read') {
      if (!parseStringList(val)) return undefined;
    } else if (k === 'cmd') {
      if (!Array.isArray(val)) return undefined;
      for (const c of val) {
        if (typeof c !== 'object' || c === null || Array.isArray(c)) return undefined;
        let n = 0;
        for (const ck in c) {
          if ((ck !== 'type' && ck !== 'topic') || typeof (c as Record<string, unknown>)[ck] !== 'string') return undefined;
          n++;
        }
        if (n !== 2) return undefined;
      }
    } else {
      return undefined;
    }
  }
  return v as GrantSpec;
}

/** Turns verified claims into a Principal, refusing anything the rest of the hub cannot trust. */
export function toPrincipal(p: JWTPayload, orgClaim: string): Principal {
  const { sub } = p;
  if (sub === undefined) throw new AuthError('missing_claim:sub');
  if (typeof sub !== 'string' || sub.length === 0 || sub.length > MAX_SUB) throw new AuthError('bad_claim:sub');

  const org = Object.hasOwn(p, orgClaim) ? p[orgClaim] : undefined;
  if (org === undefined) throw new AuthError(`missing_claim:${orgClaim}`);
  // The org becomes a NATS subject token, so `.`, `*`, `>` and whitespace must never get through.
  if (typeof org !== 'string' || !ORG_RE.test(org)) throw new AuthError(`bad_claim:${orgClaim}`);

  const rawRoles = p.roles;
  let roles: readonly string[] = EMPTY_ROLES;
  if (rawRoles !== undefined) {
    if (!parseStringList(rawRoles)) throw new AuthError('bad_claim:roles');
    roles = rawRoles as string[];
  }

  let acl: GrantSpec | undefined;
  if (p.acl !== undefined) {
    acl = parseAcl(p.acl);
    if (acl === undefined) throw new AuthError('bad_claim:acl');
  }

  const { jti } = p;
  if (jti !== undefined && (typeof jti !== 'string' || jti.length === 0 || jti.length > MAX_JTI)) {
    throw new AuthError('bad_claim:jti');
  }
  // jose has already required `exp` and checked that it (and `iat`, when present) is a number.
  return { sub, org, roles, acl, jti, exp: p.exp as number, iat: p.iat };
}

/** RFC 7515 §4.1.9: `typ` compares case-insensitively, and `application/` may be left out. */
function normalizeTyp(t: string): string {
  const l = t.toLowerCase();
  return l.startsWith('application/') ? l.slice(12) : l;
}

/**
 * ORGHUB_JWT_MAX_TTL: a token may live at most `maxTtl` seconds from its `iat` (or, without `iat`,
 * from now). This bound is what lets a revocation be forgotten after `maxTtl`: no token it could
 * match is still valid then. An `iat` in the future (beyond the clock tolerance) is refused too, so
 * a token cannot stretch its life by claiming a later issue time.
 */
export function checkLifetime(p: Principal, maxTtl: number, toleranceSec: number, nowSec = Date.now() / 1000): void {
  const from = p.iat ?? nowSec;
  if (p.iat !== undefined && p.iat > nowSec + toleranceSec) throw new AuthError('bad_claim:iat');
  if (p.exp - from > maxTtl + toleranceSec) throw new AuthError('token_lifetime_too_long');
}

/**
 * Extracts the token from `Authorization: Bearer <jwt>` (scheme case-insensitive) or, failing
 * that, from the `access_token` query parameter of a raw query string (with or without `?`).
 * Returns undefined when neither carries a non-empty token.
 */
export function extractToken(authorizationHeader: string, query: string): string | undefined {
  if (authorizationHeader) {
    const h = authorizationHeader.trim();
    if (h.length > 7 && h.slice(0, 7).toLowerCase() === 'bearer ') {
      const t = h.slice(7).trim();
      if (t) return t;
    }
  }
  if (query && query.includes('access_token=')) {
    const t = new URLSearchParams(query.charCodeAt(0) === 63 /* ? */ ? query.slice(1) : query).get('access_token');
    if (t) return t;
  }
  return undefined;
}

/** Builds a verifier from the config: loads the JWKS file (or sets up the URL JWKS) up front. */
export async function createJoseVerifier(cfg: Config, opts: JoseVerifierOptions = {}): Promise<JoseVerifier> {
  const orgClaim = cfg.ORGHUB_ORG_CLAIM || 'org';
  const maxLength = cfg.ORGHUB_JWT_MAX_LENGTH || 8192;
  const maxTtl = cfg.ORGHUB_JWT_MAX_TTL || 86_400;
  const wantTyp = normalizeTyp(cfg.ORGHUB_JWT_TYP || '');
  const base = {
    issuer: cfg.ORGHUB_JWT_ISSUER,
    audience: cfg.ORGHUB_JWT_AUDIENCE,
    requiredClaims: ['exp'],
    clockTolerance: cfg.ORGHUB_JWT_CLOCK_TOLERANCE || 0,
  };
  if (!base.issuer || !base.audience) throw new ConfigError('ORGHUB_JWT_ISSUER and ORGHUB_JWT_AUDIENCE must be set');
  // One frozen options object per alg, each allowing only that alg: built once, reused per call.
  const optionsFor = {} as Record<HeaderAlg, JWTVerifyOptions>;
  for (const alg of [...JWKS_ALGS, 'HS256'] as const) optionsFor[alg] = Object.freeze({ ...base, algorithms: [alg] });

  let hmacKey: CryptoKey | undefined;
  if (cfg.ORGHUB_JWT_HS256_SECRET) {
    hmacKey = await crypto.subtle.importKey(
      'raw',
      new TextEncoder().encode(cfg.ORGHUB_JWT_HS256_SECRET),
      { name: 'HMAC', hash: 'SHA-256' },
      false,
      ['verify'],
    );
  }

  const source = cfg.ORGHUB_JWT_JWKS;
  const warn = opts.onWarning ?? (() => {});
  let ring: KeyRing | undefined;
  let remoteKey: JWTVerifyGetKey | undefined;
  let reload: () => Promise<void> = async () => {};
  let onHup: (() => void) | undefined;

  if (/^https?:\/\//i.test(source)) {
    const set = createRemoteJWKSet(new URL(source), {
      timeoutDuration: opts.jwksTimeoutMs ?? 5000,
      cooldownDuration: opts.jwksCooldownMs ?? 30_000,
      cacheMaxAge: opts.jwksMaxAgeMs ?? 600_000,
    });
    // Separates "no such key" (the client's problem) from "cannot fetch keys" (ours: retry later).
    remoteKey = async (header, token) => {
      try {
        return await set(header, token);
      } catch (err) {
        if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) {
          throw new AuthError('unknown_kid', { cause: err });
        }
        throw new HubError('unavailable', 'jwks_unavailable', { cause: err });
      }
    };
    reload = () => set.reload();
    // Warm the cache without holding up start: an unreachable IdP must not stop the hub.
    set.reload().catch((err: unknown) => warn(`JWKS ${source} not reachable yet: ${(err as Error).message}`));
  } else if (source) {
    const path = source.startsWith('file:') ? fileURLToPath(source) : source;
    const loaded = await loadJwksFile(path);
    for (const s of loaded.skipped) warn(`JWKS key skipped: ${s}`);
    ring = loaded.ring;
    reload = async () => {
      const next = await loadJwksFile(path);
      for (const s of next.skipped) warn(`JWKS key skipped: ${s}`);
      ring = next.ring;
    };
    if (opts.reloadOnSighup) {
      onHup = () => void reload().catch((err: unknown) => warn(`JWKS reload failed, keeping the old keys: ${(err as Error).message}`));
      process.on('SIGHUP', onHup);
    }
  }

  async function verify(token: string): Promise<Principal> {
    if (typeof token !== 'string' || token.length === 0) throw new AuthError('token_missing');
    // Before any parsing: the length is the only thing an unauthenticated peer controls for free.
    if (token.length > maxLength) throw new AuthError('token_too_large');
    // Exactly three base64url parts: decoders that skip whitespace or padding never get a say.
    if (!COMPACT_RE.test(token)) throw new AuthError('token_malformed');
    const header = parseHeader(token.slice(0, token.indexOf('.')));
    if (header === undefined) throw new AuthError('token_malformed');

    for (const h of KEY_HEADERS) if (Object.hasOwn(header, h)) throw new AuthError('key_header_forbidden');
    if (Object.hasOwn(header, 'crit')) throw new AuthError('crit_forbidden');
    const { alg, kid } = header;
    if (typeof alg !== 'string') throw new AuthError('token_malformed');
    if (wantTyp && (typeof header.typ !== 'string' || normalizeTyp(header.typ) !== wantTyp)) throw new AuthError('bad_typ');
    if (kid !== undefined && typeof kid !== 'string') throw new AuthError('token_malformed');

    let key: CryptoKey | JWTVerifyGetKey;
    if (alg === 'HS256') {
      if (hmacKey === undefined) throw new AuthError('alg_not_allowed');
      key = hmacKey;
    } else if (alg === 'ES256' || alg === 'EdDSA' || alg === 'RS256') {
      if (ring !== undefined) {
        const sel = ring.select(alg, kid);
        if (typeof sel === 'string') throw new AuthError(sel);
        key = sel;
      } else if (remoteKey !== undefined) {
        key = remoteKey;
      } else {
        throw new AuthError('alg_not_allowed');
      }
    } else {
      throw new AuthError('alg_not_allowed');
    }

    let payload: JWTPayload;
    try {
      const opts = optionsFor[alg];
      ({ payload } = typeof key === 'function' ? await jwtVerify(token, key, opts) : await jwtVerify(token, key, opts));
    } catch (err) {
      throw mapJoseError(err);
    }
    const principal = toPrincipal(payload, orgClaim);
    checkLifetime(principal, maxTtl, base.clockTolerance);
    return principal;
  }

  return {
    verify,
    reload,
    close() {
      if (onHup) process.off('SIGHUP', onHup);
      onHup = undefined;
    },
  };
}
