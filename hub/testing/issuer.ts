import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWTHeaderParameters } from 'jose';

/**
 * A token issuer for tests: fresh ES256, EdDSA and RS256 key pairs per call, their public keys in a
 * JWKS file, and the env that points a hub at it. Every suite uses this; keep the API stable.
 */
export interface TestIssuer {
  /** A JWKS file on disk (tmp dir) with the ES256, EdDSA and RS256 public keys, distinct kids. */
  jwksPath: string;
  /** ORGHUB_JWT_JWKS, ORGHUB_JWT_ISSUER='orghub-test', ORGHUB_JWT_AUDIENCE='orghub-test'. */
  env: Record<string, string>;
  /**
   * Signs `claims` over defaults iss/aud/iat/exp (ttl 3600 s). A claim given as `undefined` is
   * left out (e.g. `exp: undefined`). `header` is merged over `{alg, kid, typ}`; `kid: undefined`
   * drops the kid. The alg must stay that of the key (jose refuses otherwise).
   */
  sign(
    claims: Record<string, unknown>,
    opts?: { alg?: 'ES256' | 'EdDSA' | 'RS256'; ttlSeconds?: number; header?: Record<string, unknown> },
  ): Promise<string>;
  /** An ES256 token for `sub` in `org`, valid 1 h; roles default to ['admin']. */
  token(org: string, sub: string, roles?: string[], extra?: Record<string, unknown>): Promise<string>;
}

type Alg = 'ES256' | 'EdDSA' | 'RS256';
export const TEST_ISSUER = 'orghub-test';
export const TEST_AUDIENCE = 'orghub-test';

const dirs: string[] = [];
let cleanupHooked = false;
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'orghub-issuer-'));
  dirs.push(dir);
  if (!cleanupHooked) {
    cleanupHooked = true;
    process.once('exit', () => {
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    });
  }
  return dir;
}

function dropUndefined(o: Record<string, unknown>): Record<string, unknown> {
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
}

/** Creates an issuer with fresh keys; each call is independent of every other. */
export async function createTestIssuer(): Promise<TestIssuer> {
  const algs: Alg[] = ['ES256', 'EdDSA', 'RS256'];
  const pairs = await Promise.all(
    algs.map((alg) => generateKeyPair(alg, alg === 'RS256' ? { modulusLength: 2048 } : undefined)),
  );
  const keys = {} as Record<Alg, { kid: string; privateKey: CryptoKey }>;
  const jwks: Record<string, unknown>[] = [];
  for (let i = 0; i < algs.length; i++) {
    const alg = algs[i]!;
    const kid = `${alg.toLowerCase()}-${randomUUID().slice(0, 8)}`;
    keys[alg] = { kid, privateKey: pairs[i]!.privateKey };
    jwks.push({ ...(await exportJWK(pairs[i]!.publicKey)), kid, alg, use: 'sig' });
  }
  const jwksPath = join(tempDir(), 'jwks.json');
  writeFileSync(jwksPath, JSON.stringify({ keys: jwks }, null, 2));

  const sign: TestIssuer['sign'] = async (claims, opts = {}) => {
    const alg = opts.alg ?? 'ES256';
    const now = Math.floor(Date.now() / 1000);
    const payload = dropUndefined({
      iss: TEST_ISSUER,
      aud: TEST_AUDIENCE,
      iat: now,
      exp: now + (opts.ttlSeconds ?? 3600),
      ...claims,
    });
    const header = dropUndefined({ alg, kid: keys[alg].kid, typ: 'JWT', ...opts.header }) as JWTHeaderParameters;
    return new SignJWT(payload).setProtectedHeader(header).sign(keys[alg].privateKey);
  };

  return {
    jwksPath,
    env: { ORGHUB_JWT_JWKS: jwksPath, ORGHUB_JWT_ISSUER: TEST_ISSUER, ORGHUB_JWT_AUDIENCE: TEST_AUDIENCE },
    sign,
    token: (org, sub, roles = ['admin'], extra = {}) => sign({ sub, org, roles, ...extra }),
  };
}
