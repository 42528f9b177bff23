import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../config/config.ts';
import { ConfigError } from '../errors.ts';
import { createTestIssuer } from '../testing/issuer.ts';
import { AuthError } from '../errors.ts';
import { createJoseVerifier } from './joseVerifier.ts';

const SECRET = 's'.repeat(32);
const base = { ORGHUB_JWT_ISSUER: 'orghub-test', ORGHUB_JWT_AUDIENCE: 'orghub-test' };
const refusedAtStart = (env: Record<string, string>, re: RegExp) => assert.throws(() => loadConfig(env), (e: unknown) => e instanceof ConfigError && re.test(e.message));

describe('JWT hardening', () => {
  it('hardening - a JWKS URL must be https, plain http only on loopback', () => {
    refusedAtStart({ ...base, ORGHUB_JWT_JWKS: 'http://idp.example.com/jwks.json' }, /ORGHUB_JWT_JWKS must be an https URL/);
    refusedAtStart({ ...base, ORGHUB_JWT_JWKS: 'http://10.0.0.5/jwks.json' }, /ORGHUB_JWT_JWKS/);
    refusedAtStart({ ...base, ORGHUB_JWT_JWKS: 'ftp://idp.example.com/jwks.json' }, /ORGHUB_JWT_JWKS/);
    for (const ok of ['https://idp.example.com/jwks.json', 'http://127.0.0.1:8081/jwks.json', 'http://localhost/jwks', 'http://[::1]:9/j', '/etc/orghub/jwks.json']) {
      assert.equal(loadConfig({ ...base, ORGHUB_JWT_JWKS: ok }).ORGHUB_JWT_JWKS, ok);
    }
  });

  it('hardening - HS256 next to a JWKS is refused unless ORGHUB_JWT_ALLOW_HS256_WITH_JWKS=true', () => {
    refusedAtStart({ ...base, ORGHUB_JWT_JWKS: '/k.json', ORGHUB_JWT_HS256_SECRET: SECRET }, /ORGHUB_JWT_ALLOW_HS256_WITH_JWKS/);
    assert.ok(loadConfig({ ...base, ORGHUB_JWT_JWKS: '/k.json', ORGHUB_JWT_HS256_SECRET: SECRET, ORGHUB_JWT_ALLOW_HS256_WITH_JWKS: 'true' }));
    assert.ok(loadConfig({ ...base, ORGHUB_JWT_HS256_SECRET: SECRET }), 'HS256 alone (development) still starts');
  });

  it('hardening - ORGHUB_ENV=production refuses the development issuer/audience, a missing cluster secret or API key pepper', () => {
    const cluster = { ORGHUB_CLUSTER_SECRET: 'c'.repeat(32), ORGHUB_APIKEY_PEPPER: 'p'.repeat(32) };
    refusedAtStart({ ORGHUB_ENV: 'production', ORGHUB_JWT_JWKS: '/k.json', ...cluster }, /ORGHUB_JWT_ISSUER and ORGHUB_JWT_AUDIENCE/);
    refusedAtStart({ ORGHUB_ENV: 'production', ORGHUB_JWT_JWKS: '/k.json', ORGHUB_JWT_ISSUER: 'https://idp', ...cluster }, /ORGHUB_JWT_AUDIENCE/);
    refusedAtStart({ ORGHUB_ENV: 'production', ORGHUB_JWT_JWKS: '/k.json', ORGHUB_JWT_ISSUER: 'https://idp', ORGHUB_JWT_AUDIENCE: 'hub', ORGHUB_APIKEY_PEPPER: 'p'.repeat(32) }, /ORGHUB_CLUSTER_SECRET/);
    refusedAtStart({ ORGHUB_ENV: 'production', ORGHUB_JWT_JWKS: '/k.json', ORGHUB_JWT_ISSUER: 'https://idp', ORGHUB_JWT_AUDIENCE: 'hub', ORGHUB_CLUSTER_SECRET: 'c'.repeat(32) }, /ORGHUB_APIKEY_PEPPER/);
    refusedAtStart({ ORGHUB_JWT_JWKS: '/k.json', ORGHUB_CLUSTER_SECRET: 'short' }, /at least 32 bytes/);
    assert.equal(loadConfig({ ORGHUB_ENV: 'production', ORGHUB_JWT_JWKS: '/k.json', ORGHUB_JWT_ISSUER: 'https://idp', ORGHUB_JWT_AUDIENCE: 'hub', ...cluster }).ORGHUB_ENV, 'production');
    assert.equal(loadConfig({ ORGHUB_JWT_JWKS: '/k.json' }).ORGHUB_JWT_ISSUER, 'orghub-dev', 'development keeps its defaults');
  });

  it('hardening - ORGHUB_JWT_TYP requires that header typ (case-insensitive, application/ optional)', async () => {
    const issuer = await createTestIssuer();
    const v = await createJoseVerifier(loadConfig({ ...issuer.env, ORGHUB_JWT_TYP: 'at+jwt' }));
    const claims = { sub: 'u', org: 'acme' };
    for (const typ of ['at+jwt', 'AT+JWT', 'application/at+jwt']) assert.equal((await v.verify(await issuer.sign(claims, { header: { typ } }))).sub, 'u', typ);
    for (const typ of ['JWT', undefined, 'at+jwt2']) {
      await assert.rejects(v.verify(await issuer.sign(claims, { header: { typ } })), (e: unknown) => e instanceof AuthError && e.reason === 'bad_typ', String(typ));
    }
    const unchecked = await createJoseVerifier(loadConfig(issuer.env));
    assert.equal((await unchecked.verify(await issuer.sign(claims, { header: { typ: 'whatever' } }))).sub, 'u', 'no ORGHUB_JWT_TYP: typ not checked');
  });
});
