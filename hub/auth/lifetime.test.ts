import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AuthError } from '../errors.ts';
import { checkLifetime } from './joseVerifier.ts';
import type { Principal } from './principal.ts';

const NOW = 1_800_000_000;
const p = (exp: number, iat?: number): Principal => ({ sub: 's', org: 'o', roles: [], exp, iat });
const refused = (fn: () => void, reason: string) => assert.throws(fn, (e: unknown) => e instanceof AuthError && e.reason === reason);

describe('max token lifetime', () => {
  it('lifetime - exp - iat up to ORGHUB_JWT_MAX_TTL (plus tolerance) passes; beyond is token_lifetime_too_long', () => {
    checkLifetime(p(NOW + 3600, NOW), 3600, 0, NOW);
    checkLifetime(p(NOW + 3605, NOW), 3600, 5, NOW);
    refused(() => checkLifetime(p(NOW + 3601, NOW), 3600, 0, NOW), 'token_lifetime_too_long');
  });
  it('lifetime - without iat the remaining life counts; an iat in the future is refused', () => {
    checkLifetime(p(NOW + 3600), 3600, 0, NOW);
    refused(() => checkLifetime(p(NOW + 7200), 3600, 0, NOW), 'token_lifetime_too_long');
    refused(() => checkLifetime(p(NOW + 7200, NOW + 3600), 7200, 0, NOW), 'bad_claim:iat');
  });
});
