import { readFileSync } from 'node:fs';

const read = (rel: string) => readFileSync(new URL(`../${rel}`, import.meta.url), 'utf8');

/**
 * The refusal reasons hub/auth/joseVerifier.ts can raise as literals (`new AuthError('x')`). Read from
 * the source rather than listed by hand, so a reason added there fails the tests that must cover it.
 * Reasons built from a claim name (`missing_claim:<org claim>`) are not literals and not listed.
 */
export function verifierReasons(): string[] {
  return [...new Set([...read('auth/joseVerifier.ts').matchAll(/AuthError\('([a-z_:]+)'/g)].map((m) => m[1]))].sort();
}

/** `token_invalid` is the verifier's fail-closed answer to an error jose was not expected to throw: no token can aim at it. */
export const UNREACHABLE_REASONS = ['token_invalid'];
