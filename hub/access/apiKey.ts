import { createHmac, createSecretKey, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import type { RoleGrants } from '../acl/grants.ts';
import { validateRoleGrants } from '../acl/grants.ts';
import type { GrantSpec } from '../auth/principal.ts';
import { HubError } from '../errors.ts';

/**
 * API keys for server-to-server callers: `ohk_<id>_<secret>`, where `id` is 16 hex characters (the
 * lookup key, safe to show and log) and `secret` is 32 random bytes in base64url (256 bits).
 */
export const API_KEY_PREFIX = 'ohk_';
const KEY_RE = /^ohk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
export const API_KEY_ID_RE = /^[0-9a-f]{16}$/;

/** The platform operator's role: manages every org (the org lifecycle routes), belongs to none. */
export const PLATFORM_ROLE = 'platform';
/**
 * The owner of platform API keys. A leading `_` is outside the alphabet of a token's org claim
 * (hub/auth/joseVerifier.ts) and of POST /v1/orgs, so no tenant can ever be this org, list or
 * revoke its keys, or be mistaken for it.
 */
export const PLATFORM_KEY_ORG = '_platform';

/** A stored key: never the secret, only its keyed hash. Times in ms since the epoch. */
export interface ApiKeyRecord {
  id: string;
  org: string;
  name: string;
  roles: string[];
  acl?: GrantSpec;
  /** base64url HMAC-SHA-256(pepper, id ":" secret). */
  hash: string;
  createdAt: number;
  createdBy: string;
  expiresAt?: number;
  lastUsedAt?: number;
  revokedAt?: number;
}

export function isApiKey(token: string): boolean {
  return token.startsWith(API_KEY_PREFIX);
}

export function parseApiKey(token: string): { id: string; secret: string } | undefined {
  const m = KEY_RE.exec(token);
  return m ? { id: m[1]!, secret: m[2]! } : undefined;
}

export function newApiKey(): { id: string; secret: string; key: string } {
  const id = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  return { id, secret, key: `${API_KEY_PREFIX}${id}_${secret}` };
}

/**
 * Keyed hash with a server pepper (ORGHUB_APIKEY_PEPPER). A slow KDF (bcrypt, scrypt, argon2) would
 * be wrong here: it exists to slow the guessing of low-entropy passwords, but a 256-bit random secret
 * cannot be guessed however fast the hash, and bcrypt's ~50-100 ms per check would be paid on every
 * API request. The pepper means a leaked store alone does not let anyone test candidate keys.
 */
export function createKeyHasher(pepper: string): { hash(id: string, secret: string): string; matches(rec: ApiKeyRecord, secret: string, decodedHash?: Buffer): boolean } {
  const key: KeyObject = createSecretKey(Buffer.from(pepper, 'utf8'));
  const raw = (id: string, secret: string) => createHmac('sha256', key).update(`${id}:${secret}`).digest();
  return {
    hash: (id, secret) => raw(id, secret).toString('base64url'),
    /** `decodedHash`: the record's hash already decoded (the per-node cache keeps it so). */
    matches(rec, secret, decodedHash) {
      const want = decodedHash ?? Buffer.from(rec.hash, 'base64url');
      const got = raw(rec.id, secret);
      return want.length === got.length && timingSafeEqual(want, got);
    },
  };
}

export interface CreateApiKeyRequest {
  name: string;
  roles: string[];
  acl?: GrantSpec;
  expiresAt?: number;
}

const MAX_LIFETIME_MS = 5 * 365 * 24 * 3600_000;

/** Validates POST /v1/apikeys: roles must be roles the hub knows; the ACL is checked like a role's grants. */
export function parseCreateRequest(body: unknown, roleGrants: RoleGrants, nowMs: number): CreateApiKeyRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HubError('invalid', 'body must be a JSON object');
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b)) if (!['name', 'roles', 'acl', 'expiresAt'].includes(k)) throw new HubError('invalid', `unknown field "${k}"`);
  const name = parseKeyName(b.name);
  const roles = b.roles;
  if (!Array.isArray(roles) || roles.length === 0 || roles.length > 16 || !roles.every((r) => typeof r === 'string')) throw new HubError('invalid', 'roles must be an array of 1-16 role names');
  for (const r of roles as string[]) if (!Object.hasOwn(roleGrants, r)) throw new HubError('invalid', `unknown role "${String(r).slice(0, 64)}"`);
  // An org admin must not mint a key for the platform operator's role, whatever the role grants say.
  if ((roles as string[]).includes(PLATFORM_ROLE)) throw new HubError('invalid', 'an org API key cannot carry the platform role');
  let acl: GrantSpec | undefined;
  if (b.acl !== undefined) {
    try {
      validateRoleGrants({ acl: b.acl }, 'acl');
    } catch (err) {
      throw new HubError('invalid', (err as Error).message.slice(0, 300));
    }
    acl = b.acl as GrantSpec;
  }
  return { name, roles: roles as string[], acl, expiresAt: parseExpiresAt(b.expiresAt, nowMs) };
}

function parseKeyName(v: unknown): string {
  const name = v ?? '';
  if (typeof name !== 'string' || name.length > 100 || /[\u0000-\u001f\u007f]/.test(name) || /\p{Cs}/u.test(name)) throw new HubError('invalid', 'name must be a string of at most 100 characters, without control characters');
  return name;
}

function parseExpiresAt(v: unknown, nowMs: number): number | undefined {
  if (v === undefined) return undefined;
  const t = typeof v === 'string' && /^\d{4}-\d{2}-\d{2}T/.test(v) ? Date.parse(v) : NaN;
  if (!Number.isFinite(t)) throw new HubError('invalid', 'expiresAt must be an ISO 8601 date-time');
  if (t <= nowMs || t > nowMs + MAX_LIFETIME_MS) throw new HubError('invalid', 'expiresAt must lie in the future, at most 5 years ahead');
  return t;
}

/** Validates POST /v1/platform/apikeys (and the CLI's options): a name and an expiry; the role is always `platform`. */
export function parsePlatformKeyRequest(body: unknown, nowMs: number): CreateApiKeyRequest {
  const b = body === undefined ? {} : body;
  if (typeof b !== 'object' || b === null || Array.isArray(b)) throw new HubError('invalid', 'body must be a JSON object');
  const r = b as Record<string, unknown>;
  for (const k of Object.keys(r)) if (!['name', 'expiresAt'].includes(k)) throw new HubError('invalid', `unknown field "${k.slice(0, 64)}"`);
  return { name: parseKeyName(r.name), roles: [PLATFORM_ROLE], expiresAt: parseExpiresAt(r.expiresAt, nowMs) };
}

/** A record as the API shows it: never the hash. */
export function describeKey(r: ApiKeyRecord): Record<string, unknown> {
  const iso = (t?: number) => (t === undefined ? null : new Date(t).toISOString());
  return { id: r.id, name: r.name, roles: r.roles, acl: r.acl ?? null, createdAt: iso(r.createdAt), createdBy: r.createdBy, expiresAt: iso(r.expiresAt), lastUsedAt: iso(r.lastUsedAt), revokedAt: iso(r.revokedAt) };
}
