// Development signing key for `npm start` and scripts/mint-token.ts: one ES256 key pair under
// .data/dev-keys/, created once and reused. Never for production: the private key sits in the repo
// folder (git-ignored) with no protection beyond file mode 0600.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';

/** Creates the key pair unless both files already exist; safe to call from several processes. */
export async function ensureDevKeys(root) {
  const dir = join(root, '.data', 'dev-keys');
  const privateKeyPath = join(dir, 'private.jwk.json');
  const jwksPath = join(dir, 'jwks.json');
  if (existsSync(privateKeyPath) && existsSync(jwksPath)) {
    return { dir, jwksPath, privateKeyPath, created: false };
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
  const pub = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(pub);
  const priv = { ...(await exportJWK(privateKey)), kid, alg: 'ES256', use: 'sig' };
  // Write to temporary names and rename, so a reader never sees half a file.
  const tmp = `.${process.pid}.tmp`;
  writeFileSync(privateKeyPath + tmp, JSON.stringify(priv, null, 2) + '\n', { mode: 0o600 });
  writeFileSync(jwksPath + tmp, JSON.stringify({ keys: [{ ...pub, kid, alg: 'ES256', use: 'sig' }] }, null, 2) + '\n');
  renameSync(privateKeyPath + tmp, privateKeyPath);
  renameSync(jwksPath + tmp, jwksPath);
  return { dir, jwksPath, privateKeyPath, created: true };
}

/** The private JWK written by ensureDevKeys. */
export function readDevPrivateKey(privateKeyPath) {
  return JSON.parse(readFileSync(privateKeyPath, 'utf8'));
}
