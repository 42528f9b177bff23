import { readFile } from 'node:fs/promises';
import { importJWK, type JWK } from 'jose';
import { ConfigError } from '../errors.ts';

/** The asymmetric algorithms a JWKS may supply. HS256 never comes from a JWKS (see joseVerifier.ts). */
export const JWKS_ALGS = ['ES256', 'EdDSA', 'RS256'] as const;
export type JwksAlg = (typeof JWKS_ALGS)[number];

/** Outcome of a key lookup: the key, or the AuthError reason to refuse the token with. */
export type KeySelection = CryptoKey | 'unknown_kid' | 'alg_mismatch';

/**
 * Verification keys imported once. `select` is the per-token path: a Map lookup plus one
 * comparison, no parsing and no allocation.
 */
export interface KeyRing {
  /** kid undefined picks the only key of that alg; if there are several (or none) it is `unknown_kid`. */
  select(alg: JwksAlg, kid: string | undefined): KeySelection;
  readonly size: number;
}

/** Keys the JWKS held that will never verify anything, with why; worth one log line each. */
export interface LoadedKeyRing {
  ring: KeyRing;
  skipped: string[];
}

interface Entry {
  alg: JwksAlg;
  key: CryptoKey;
}

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;
const MIN_RSA_MODULUS_BYTES = 256; // 2048 bits; jose refuses smaller at verify time anyway

/** Which of our algorithms a JWK is for, or why it is unusable. */
function algFor(jwk: Record<string, unknown>): JwksAlg | string {
  const { kty, crv, alg, use, key_ops: ops } = jwk;
  if (use !== undefined && use !== 'sig') return `use ${String(use)}`;
  if (ops !== undefined && !(Array.isArray(ops) && ops.includes('verify'))) return 'key_ops without verify';
  if (kty === 'EC') {
    if (crv !== 'P-256') return `EC curve ${String(crv)}`;
    return alg === undefined || alg === 'ES256' ? 'ES256' : `alg ${String(alg)} on a P-256 key`;
  }
  if (kty === 'OKP') {
    if (crv !== 'Ed25519') return `OKP curve ${String(crv)}`;
    return alg === undefined || alg === 'EdDSA' || alg === 'Ed25519' ? 'EdDSA' : `alg ${String(alg)} on an Ed25519 key`;
  }
  if (kty === 'RSA') {
    if (alg !== undefined && alg !== 'RS256') return `alg ${String(alg)} on an RSA key`;
    const n = jwk.n;
    if (typeof n !== 'string' || Buffer.byteLength(n, 'base64url') < MIN_RSA_MODULUS_BYTES) return 'RSA modulus under 2048 bits';
    return 'RS256';
  }
  // `oct` keys are skipped on purpose: a JWKS must never become an HMAC secret.
  return `kty ${String(kty)}`;
}

function isJwksAlg(v: string): v is JwksAlg {
  return (JWKS_ALGS as readonly string[]).includes(v);
}

/** Only the public members reach importJWK, so stray `ext`/`key_ops`/`alg` cannot change the import. */
function publicPart(jwk: Record<string, unknown>): JWK {
  const out: Record<string, unknown> = { kty: jwk.kty };
  for (const m of ['crv', 'x', 'y', 'n', 'e']) if (jwk[m] !== undefined) out[m] = jwk[m];
  return out as JWK;
}

/**
 * Imports every usable key of a JWKS document. Throws ConfigError when the document is not a
 * JWKS, holds private key material, repeats a kid, or has no usable key at all.
 */
export async function importJwks(doc: unknown, source = 'ORGHUB_JWT_JWKS'): Promise<LoadedKeyRing> {
  const keys = (doc as { keys?: unknown } | null)?.keys;
  if (typeof doc !== 'object' || doc === null || !Array.isArray(keys)) {
    throw new ConfigError(`${source}: not a JWKS document (expected {"keys": [...]})`);
  }
  const byKid = new Map<string, Entry>();
  const byAlg = new Map<JwksAlg, Entry[]>();
  const skipped: string[] = [];
  for (let i = 0; i < keys.length; i++) {
    const jwk = keys[i] as Record<string, unknown>;
    const label = typeof jwk?.kid === 'string' ? `kid ${jwk.kid}` : `key #${i}`;
    if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) throw new ConfigError(`${source}: ${label} is not an object`);
    if (jwk.kty !== 'oct' && PRIVATE_MEMBERS.some((m) => jwk[m] !== undefined)) {
      throw new ConfigError(`${source}: ${label} contains private key material; publish public keys only`);
    }
    if (jwk.kid !== undefined && typeof jwk.kid !== 'string') throw new ConfigError(`${source}: ${label} has a non-string kid`);
    const alg = algFor(jwk);
    if (!isJwksAlg(alg)) {
      skipped.push(`${label}: ${alg}`);
      continue;
    }
    let key: CryptoKey;
    try {
      key = (await importJWK(publicPart(jwk), alg)) as CryptoKey;
    } catch (cause) {
      throw new ConfigError(`${source}: ${label} cannot be imported as ${alg}: ${(cause as Error).message}`);
    }
    const entry: Entry = { alg, key };
    if (typeof jwk.kid === 'string') {
      if (byKid.has(jwk.kid)) throw new ConfigError(`${source}: kid ${jwk.kid} appears twice`);
      byKid.set(jwk.kid, entry);
    }
    const list = byAlg.get(alg) ?? [];
    list.push(entry);
    byAlg.set(alg, list);
  }
  const size = [...byAlg.values()].reduce((n, l) => n + l.length, 0);
  if (size === 0) throw new ConfigError(`${source}: no usable ES256, EdDSA or RS256 key (${skipped.join('; ') || 'empty'})`);
  // A kid-less token is accepted only when exactly one key could have signed it.
  const soleByAlg = new Map<JwksAlg, CryptoKey>();
  for (const [alg, list] of byAlg) if (list.length === 1) soleByAlg.set(alg, list[0]!.key);

  const ring: KeyRing = {
    size,
    select(alg, kid) {
      if (kid === undefined) return soleByAlg.get(alg) ?? 'unknown_kid';
      const e = byKid.get(kid);
      if (e === undefined) return 'unknown_kid';
      return e.alg === alg ? e.key : 'alg_mismatch';
    },
  };
  return { ring, skipped };
}

/** Reads and imports a JWKS file. Errors name the variable and the path, never key material. */
export async function loadJwksFile(path: string): Promise<LoadedKeyRing> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new ConfigError(`ORGHUB_JWT_JWKS: cannot read ${path}: ${(cause as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new ConfigError(`ORGHUB_JWT_JWKS: ${path} is not valid JSON`);
  }
  return importJwks(doc, `ORGHUB_JWT_JWKS (${path})`);
}
