import { generateKeyPair, exportJWK, SignJWT, type CryptoKey } from 'jose';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { removeOnExit } from './proc.ts';

/**
 * A self-contained ES256 issuer for the benches, so they do not depend on test helpers.
 * The JWKS is written to a temporary file that the hub reads through ORGHUB_JWT_JWKS.
 */
export interface BenchIssuer {
  readonly jwksPath: string;
  readonly issuer: string;
  readonly audience: string;
  /** Env for the hub child: ORGHUB_JWT_JWKS, ORGHUB_JWT_ISSUER, ORGHUB_JWT_AUDIENCE. */
  readonly env: Record<string, string>;
  /** ES256 token with `{sub, org, roles}` that expires in one hour. */
  token(org: string, sub: string, roles?: string[]): Promise<string>;
  /** Signs `count` distinct tokens (sub = `${prefix}${i}`) before any timing starts. */
  tokens(org: string, count: number, prefix?: string): Promise<string[]>;
  /** Removes the JWKS file. */
  dispose(): void;
}

export const BENCH_ISSUER = 'orghub-bench';
export const BENCH_AUDIENCE = 'orghub-bench';

export async function createBenchIssuer(): Promise<BenchIssuer> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const kid = `bench-${randomUUID().slice(0, 8)}`;
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' };
  const dir = mkdtempSync(join(tmpdir(), 'orghub-bench-'));
  removeOnExit(dir);
  const jwksPath = join(dir, 'jwks.json');
  writeFileSync(jwksPath, JSON.stringify({ keys: [jwk] }));

  const sign = (key: CryptoKey, org: string, sub: string, roles: string[]): Promise<string> =>
    new SignJWT({ org, roles })
      .setProtectedHeader({ alg: 'ES256', kid })
      .setSubject(sub)
      .setIssuer(BENCH_ISSUER)
      .setAudience(BENCH_AUDIENCE)
      .setIssuedAt()
      .setJti(randomUUID())
      .setExpirationTime('1h')
      .sign(key);

  return {
    jwksPath,
    issuer: BENCH_ISSUER,
    audience: BENCH_AUDIENCE,
    env: { ORGHUB_JWT_JWKS: jwksPath, ORGHUB_JWT_ISSUER: BENCH_ISSUER, ORGHUB_JWT_AUDIENCE: BENCH_AUDIENCE },
    token: (org, sub, roles = ['admin']) => sign(privateKey, org, sub, roles),
    async tokens(org, count, prefix = 'd-') {
      const out = new Array<string>(count);
      for (let i = 0; i < count; i++) out[i] = await sign(privateKey, org, `${prefix}${i}`, ['admin']);
      return out;
    },
    dispose: () => rmSync(dir, { recursive: true, force: true }),
  };
}
