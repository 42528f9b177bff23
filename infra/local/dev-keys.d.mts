import type { JWK } from 'jose';

/** Where the development key pair lives; `created` is true when this call generated it. */
export interface DevKeys {
  dir: string;
  jwksPath: string;
  privateKeyPath: string;
  created: boolean;
}

/** Creates `.data/dev-keys/` (ES256 private JWK + public `jwks.json`) under `root` once. */
export function ensureDevKeys(root: string): Promise<DevKeys>;

/** The private JWK (with `kid` and `alg`) written by ensureDevKeys. */
export function readDevPrivateKey(privateKeyPath: string): JWK & { kid: string; alg: 'ES256' };
