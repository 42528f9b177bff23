import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { loadConfig } from '../config/config.ts';
import { AuthError, HubError } from '../errors.ts';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { createJoseVerifier, extractToken, type JoseVerifier } from './joseVerifier.ts';
import { verifierReasons, UNREACHABLE_REASONS } from '../testing/sourceCodes.ts';

const SECRET = 'dev-secret-that-is-at-least-32-bytes-long';
const now = () => Math.floor(Date.now() / 1000);
const b64u = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** Asserts a refusal with exactly this reason: "throws" alone would pass a permissive verifier that crashes. */
async function refused(p: Promise<unknown>, reason: string): Promise<void> {
  let accepted: unknown;
  try {
    accepted = await p;
  } catch (err) {
    assert.ok(err instanceof AuthError, `expected AuthError(${reason}), got ${String(err)}`);
    assert.equal(err.reason, reason);
    assert.equal(err.code, 'unauthorized');
    return;
  }
  assert.fail(`token accepted (${JSON.stringify(accepted)}), expected refusal ${reason}`);
}

function hs256(header: Record<string, unknown>, payload: Record<string, unknown>, secret: string | Buffer): string {
  const input = `${b64u(header)}.${b64u(payload)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

/** Replaces one part of a compact token, keeping the other two exactly. */
function withPart(token: string, index: 0 | 1 | 2, value: string): string {
  const parts = token.split('.');
  parts[index] = value;
  return parts.join('.');
}

/** Flips one character in the middle of a segment (never the last one, whose low bits may be padding). */
function flipChar(s: string): string {
  const i = Math.floor(s.length / 2);
  return s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
}

function decodePart(token: string, index: 0 | 1): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[index]!, 'base64url').toString('utf8'));
}

describe('joseVerifier', () => {
  let issuer: TestIssuer;
  let verifier: JoseVerifier; // JWKS only, no HS256 secret
  let withSecret: JoseVerifier; // JWKS + HS256 secret
  let typed: JoseVerifier; // JWKS, ORGHUB_JWT_TYP=at+jwt
  let jwks: Record<string, Record<string, string>>; // public JWK by alg
  let attacker: { privateKey: CryptoKey; jwk: Record<string, unknown> };
  let keyServer: Server;
  let keyServerHits = 0;
  let keyServerUrl = '';

  const claims = (extra: Record<string, unknown> = {}) => ({
    iss: 'orghub-test',
    aud: 'orghub-test',
    sub: 'user-1',
    org: 'acme',
    roles: ['admin'],
    iat: now(),
    exp: now() + 600,
    ...extra,
  });
  const attackerSign = (header: Record<string, unknown>, payload: Record<string, unknown> = claims()) =>
    new SignJWT(payload).setProtectedHeader({ alg: 'ES256', ...header }).sign(attacker.privateKey);
  const pem = (alg: string) =>
    createPublicKey({ key: jwks[alg] as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' }) as string;

  before(async () => {
    issuer = await createTestIssuer();
    verifier = await createJoseVerifier(loadConfig(issuer.env));
    withSecret = await createJoseVerifier(loadConfig({ ...issuer.env, ORGHUB_JWT_HS256_SECRET: SECRET, ORGHUB_JWT_ALLOW_HS256_WITH_JWKS: 'true' }));
    typed = await createJoseVerifier(loadConfig({ ...issuer.env, ORGHUB_JWT_TYP: 'at+jwt' }));
    const doc = JSON.parse(readFileSync(issuer.jwksPath, 'utf8')) as { keys: Record<string, string>[] };
    jwks = Object.fromEntries(doc.keys.map((k) => [k.alg, k]));
    const pair = await generateKeyPair('ES256');
    attacker = { privateKey: pair.privateKey, jwk: { ...(await exportJWK(pair.publicKey)) } };
    keyServer = createServer((_req, res) => {
      keyServerHits++;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys: [attacker.jwk] }));
    });
    await new Promise<void>((resolve) => keyServer.listen(0, '127.0.0.1', resolve));
    keyServerUrl = `http://127.0.0.1:${(keyServer.address() as AddressInfo).port}`;
  });

  after(() => {
    keyServer.close();
    verifier.close();
    withSecret.close();
  });

  describe('accepts', () => {
    for (const alg of ['ES256', 'EdDSA', 'RS256'] as const) {
      it(`verifier - accepts a valid ${alg} token and returns its principal`, async () => {
        const p = await verifier.verify(await issuer.sign({ sub: 'd-42', org: 'acme', roles: ['device'], jti: 'j1' }, { alg }));
        assert.equal(p.sub, 'd-42');
        assert.equal(p.org, 'acme');
        assert.deepEqual(p.roles, ['device']);
        assert.equal(p.jti, 'j1');
        assert.ok(p.exp > now() + 3500 && p.exp <= now() + 3600);
        assert.equal(p.acl, undefined);
      });
    }

    it('verifier - issuer.token gives an ES256 admin token', async () => {
      const t = await issuer.token('org-7', 'u-1');
      assert.equal(decodePart(t, 0).alg, 'ES256');
      const p = await verifier.verify(t);
      assert.deepEqual([p.org, p.sub, p.roles], ['org-7', 'u-1', ['admin']]);
    });

    it('verifier - defaults roles to [] and passes a well-formed acl through', async () => {
      const acl = { pub: ['devices/{sub}/telemetry'], sub: ['devices/+/commands'], cmd: [{ type: 'fleet.ack', topic: 'devices/{sub}/#' }] };
      const p = await verifier.verify(await issuer.sign({ sub: 'd1', org: 'acme', acl }));
      assert.deepEqual(p.roles, []);
      assert.deepEqual(p.acl, acl);
    });

    it('verifier - accepts an aud array that contains the audience', async () => {
      const p = await verifier.verify(await issuer.sign({ sub: 'u', org: 'acme', aud: ['other', 'orghub-test'] }));
      assert.equal(p.org, 'acme');
    });

    it('verifier - accepts a kid-less token when one key of its alg exists', async () => {
      const p = await verifier.verify(await issuer.sign({ sub: 'u', org: 'acme' }, { alg: 'EdDSA', header: { kid: undefined } }));
      assert.equal(p.sub, 'u');
    });

    it('verifier - accepts HS256 only when the secret is configured', async () => {
      const t = hs256({ alg: 'HS256', typ: 'JWT' }, claims(), SECRET);
      assert.equal((await withSecret.verify(t)).org, 'acme');
      await refused(verifier.verify(t), 'alg_not_allowed');
    });

    it('verifier - HS256-only config (no JWKS) accepts HS256 and refuses ES256', async () => {
      const v = await createJoseVerifier(loadConfig({ ORGHUB_JWT_ISSUER: 'orghub-test', ORGHUB_JWT_AUDIENCE: 'orghub-test', ORGHUB_JWT_HS256_SECRET: SECRET }));
      assert.equal((await v.verify(hs256({ alg: 'HS256' }, claims(), SECRET))).sub, 'user-1');
      await refused(v.verify(await issuer.token('acme', 'u')), 'alg_not_allowed');
    });

    it('verifier - ORGHUB_ORG_CLAIM=tid reads the org from tid and ignores org', async () => {
      const v = await createJoseVerifier(loadConfig({ ...issuer.env, ORGHUB_ORG_CLAIM: 'tid' }));
      const p = await v.verify(await issuer.sign({ sub: 'u', tid: 'tenant_9', org: 'evil' }));
      assert.equal(p.org, 'tenant_9');
      await refused(v.verify(await issuer.sign({ sub: 'u', org: 'acme' })), 'missing_claim:tid');
      await refused(v.verify(await issuer.sign({ sub: 'u', tid: 'a.b' })), 'bad_claim:tid');
    });
  });

  describe('clock tolerance', () => {
    it('verifier - exp 2s in the past is refused with tolerance 0', async () => {
      await refused(verifier.verify(await issuer.sign({ sub: 'u', org: 'acme', exp: now() - 2 })), 'token_expired');
    });
    it('verifier - exp 2s in the past is accepted with tolerance 5', async () => {
      const v = await createJoseVerifier(loadConfig({ ...issuer.env, ORGHUB_JWT_CLOCK_TOLERANCE: '5' }));
      assert.equal((await v.verify(await issuer.sign({ sub: 'u', org: 'acme', exp: now() - 2 }))).org, 'acme');
      await refused(v.verify(await issuer.sign({ sub: 'u', org: 'acme', exp: now() - 30 })), 'token_expired');
    });
  });

  describe('refuses hostile tokens', () => {
    type Case = { name: string; make: () => Promise<string> | string; reason: string; v?: () => JoseVerifier };
    const cases: Case[] = [
      // Algorithm confusion
      { name: 'alg none, unsigned', reason: 'alg_not_allowed', make: () => `${b64u({ alg: 'none', typ: 'JWT' })}.${b64u(claims())}.` },
      { name: 'alg NONE (case variant)', reason: 'alg_not_allowed', make: () => `${b64u({ alg: 'NONE' })}.${b64u(claims())}.` },
      { name: 'alg none with a secret configured', reason: 'alg_not_allowed', v: () => withSecret, make: () => `${b64u({ alg: 'none' })}.${b64u(claims())}.` },
      { name: 'HS256 with the RSA public key PEM as secret (no secret set)', reason: 'alg_not_allowed', make: () => hs256({ alg: 'HS256', kid: jwks.RS256!.kid }, claims(), pem('RS256')) },
      { name: 'HS256 with the RSA public key PEM as secret (secret set)', reason: 'bad_signature', v: () => withSecret, make: () => hs256({ alg: 'HS256', kid: jwks.RS256!.kid }, claims(), pem('RS256')) },
      { name: 'HS256 with the EC public key PEM as secret (secret set)', reason: 'bad_signature', v: () => withSecret, make: () => hs256({ alg: 'HS256', kid: jwks.ES256!.kid }, claims(), pem('ES256')) },
      { name: 'HS256 with the Ed25519 public key PEM as secret (secret set)', reason: 'bad_signature', v: () => withSecret, make: () => hs256({ alg: 'HS256' }, claims(), pem('EdDSA')) },
      { name: 'HS256 with the RSA JWK JSON as secret (secret set)', reason: 'bad_signature', v: () => withSecret, make: () => hs256({ alg: 'HS256', kid: jwks.RS256!.kid }, claims(), JSON.stringify(jwks.RS256)) },
      { name: 'HS256 with the EC JWK JSON as secret (no secret set)', reason: 'alg_not_allowed', make: () => hs256({ alg: 'HS256', kid: jwks.ES256!.kid }, claims(), JSON.stringify(jwks.ES256)) },
      { name: 'HS256 with the RSA modulus bytes as secret (secret set)', reason: 'bad_signature', v: () => withSecret, make: () => hs256({ alg: 'HS256' }, claims(), Buffer.from(jwks.RS256!.n!, 'base64url')) },
      { name: 'HS256 signed with a wrong secret', reason: 'bad_signature', v: () => withSecret, make: () => hs256({ alg: 'HS256' }, claims(), `${SECRET}x`) },
      { name: 'ES384 alg header', reason: 'alg_not_allowed', make: async () => withPart(await issuer.token('acme', 'u'), 0, b64u({ alg: 'ES384', kid: jwks.ES256!.kid })) },
      { name: 'PS256 alg header', reason: 'alg_not_allowed', make: async () => withPart(await issuer.sign({ sub: 'u', org: 'acme' }, { alg: 'RS256' }), 0, b64u({ alg: 'PS256', kid: jwks.RS256!.kid })) },
      { name: 'ES256 token relabelled RS256 (kid of the ES256 key)', reason: 'alg_mismatch', make: async () => withPart(await issuer.token('acme', 'u'), 0, b64u({ alg: 'RS256', kid: jwks.ES256!.kid, typ: 'JWT' })) },
      { name: 'RS256 token relabelled ES256 (kid of the RSA key)', reason: 'alg_mismatch', make: async () => withPart(await issuer.sign({ sub: 'u', org: 'acme' }, { alg: 'RS256' }), 0, b64u({ alg: 'ES256', kid: jwks.RS256!.kid })) },
      { name: 'ES256 token relabelled HS256 (secret set)', reason: 'bad_signature', v: () => withSecret, make: async () => withPart(await issuer.token('acme', 'u'), 0, b64u({ alg: 'HS256', kid: jwks.ES256!.kid })) },
      { name: 'alg missing', reason: 'token_malformed', make: async () => withPart(await issuer.token('acme', 'u'), 0, b64u({ kid: jwks.ES256!.kid })) },
      { name: 'alg as an array', reason: 'token_malformed', make: async () => withPart(await issuer.token('acme', 'u'), 0, b64u({ alg: ['ES256'], kid: jwks.ES256!.kid })) },
      // Keys named or embedded by the token
      { name: 'embedded jwk header, self-signed by the attacker', reason: 'key_header_forbidden', make: () => attackerSign({ jwk: attacker.jwk }) },
      { name: 'embedded jwk header on a token the real key signed', reason: 'key_header_forbidden', make: () => issuer.sign({ sub: 'u', org: 'acme' }, { header: { jwk: jwks.ES256 } }) },
      { name: 'jku header to a local key server', reason: 'key_header_forbidden', make: () => attackerSign({ jku: `${keyServerUrl}/jwks.json`, kid: 'attacker' }) },
      { name: 'jku header on a token the real key signed', reason: 'key_header_forbidden', make: () => issuer.sign({ sub: 'u', org: 'acme' }, { header: { jku: `${keyServerUrl}/jwks.json` } }) },
      { name: 'x5u header to a local key server', reason: 'key_header_forbidden', make: () => attackerSign({ x5u: `${keyServerUrl}/cert.pem` }) },
      { name: 'x5c header', reason: 'key_header_forbidden', make: () => attackerSign({ x5c: ['MIIBszCCAVmgAwIBAgIUattacker'] }) },
      { name: 'jwk header set to null', reason: 'key_header_forbidden', make: () => attackerSign({ jwk: null, kid: jwks.ES256!.kid }) },
      { name: 'crit header the library itself would accept (b64)', reason: 'crit_forbidden', make: () => issuer.sign({ sub: 'u', org: 'acme' }, { header: { crit: ['b64'], b64: true } }) },
      { name: 'crit header with an unknown extension', reason: 'crit_forbidden', make: () => withPart(`${b64u({ alg: 'ES256', kid: jwks.ES256!.kid, crit: ['exp'], exp: 1 })}.x.y`, 1, b64u(claims())) },
      { name: 'unknown kid', reason: 'unknown_kid', make: () => attackerSign({ kid: 'no-such-kid' }) },
      { name: 'kid-less token signed by the attacker', reason: 'bad_signature', make: () => attackerSign({}) },
      { name: 'kid of the ES256 key, signed by another key', reason: 'bad_signature', make: () => attackerSign({ kid: jwks.ES256!.kid }) },
      { name: 'kid that is not a string', reason: 'token_malformed', make: () => attackerSign({ kid: 7 }) },
      // Time and issuer claims
      { name: 'missing exp', reason: 'missing_claim:exp', make: () => issuer.sign({ sub: 'u', org: 'acme', exp: undefined }) },
      { name: 'expired exp', reason: 'token_expired', make: () => issuer.sign({ sub: 'u', org: 'acme', exp: now() - 60 }) },
      { name: 'exp as a string', reason: 'bad_claim:exp', make: () => issuer.sign({ sub: 'u', org: 'acme', exp: String(now() + 600) }) },
      { name: 'future nbf', reason: 'token_not_yet_valid', make: () => issuer.sign({ sub: 'u', org: 'acme', nbf: now() + 120 }) },
      { name: 'nbf as a string', reason: 'bad_claim:nbf', make: () => issuer.sign({ sub: 'u', org: 'acme', nbf: 'yesterday' }) },
      { name: 'wrong iss', reason: 'bad_issuer', make: () => issuer.sign({ sub: 'u', org: 'acme', iss: 'https://evil.example' }) },
      { name: 'iss differing only by case', reason: 'bad_issuer', make: () => issuer.sign({ sub: 'u', org: 'acme', iss: 'ORGHUB-TEST' }) },
      { name: 'missing iss', reason: 'missing_claim:iss', make: () => issuer.sign({ sub: 'u', org: 'acme', iss: undefined }) },
      { name: 'wrong aud', reason: 'bad_audience', make: () => issuer.sign({ sub: 'u', org: 'acme', aud: 'someone-else' }) },
      { name: 'missing aud', reason: 'missing_claim:aud', make: () => issuer.sign({ sub: 'u', org: 'acme', aud: undefined }) },
      // Identity claims
      { name: 'missing org claim', reason: 'missing_claim:org', make: () => issuer.sign({ sub: 'u' }) },
      ...['a.b', '*', '>', 'ac me', ' ', '', 'acme\n', '$sys', 'x'.repeat(65), 'é', '_unauthenticated', '_health'].map((org) => ({
        name: `org claim ${JSON.stringify(org)}`,
        reason: 'bad_claim:org',
        make: () => issuer.sign({ sub: 'u', org }),
      })),
      { name: 'org claim a number', reason: 'bad_claim:org', make: () => issuer.sign({ sub: 'u', org: 42 }) },
      { name: 'org claim an array', reason: 'bad_claim:org', make: () => issuer.sign({ sub: 'u', org: ['acme'] }) },
      { name: 'org claim null', reason: 'bad_claim:org', make: () => issuer.sign({ sub: 'u', org: null }) },
      { name: 'missing sub', reason: 'missing_claim:sub', make: () => issuer.sign({ org: 'acme' }) },
      { name: 'empty sub', reason: 'bad_claim:sub', make: () => issuer.sign({ sub: '', org: 'acme' }) },
      { name: 'sub over 128 chars', reason: 'bad_claim:sub', make: () => issuer.sign({ sub: 's'.repeat(129), org: 'acme' }) },
      { name: 'sub a number', reason: 'bad_claim:sub', make: () => issuer.sign({ sub: 12, org: 'acme' }) },
      { name: 'roles a string', reason: 'bad_claim:roles', make: () => issuer.sign({ sub: 'u', org: 'acme', roles: 'admin' }) },
      { name: 'roles with a non-string', reason: 'bad_claim:roles', make: () => issuer.sign({ sub: 'u', org: 'acme', roles: ['admin', { role: 'x' }] }) },
      { name: 'jti a number', reason: 'bad_claim:jti', make: () => issuer.sign({ sub: 'u', org: 'acme', jti: 5 }) },
      ...[
        ['a string', 'pub:#'],
        ['an array', [['#']]],
        ['null', null],
        ['pub not an array', { pub: '#' }],
        ['pub with a number', { pub: [1] }],
        ['an unknown key', { publish: ['#'] }],
        ['cmd entry missing topic', { cmd: [{ type: 'device.reboot' }] }],
        ['cmd entry with an extra key', { cmd: [{ type: '*', topic: '#', org: 'other' }] }],
        ['cmd not an array', { cmd: { type: '*', topic: '#' } }],
      ].map(([what, acl]) => ({
        name: `acl claim ${what as string}`,
        reason: 'bad_claim:acl',
        make: () => issuer.sign({ sub: 'u', org: 'acme', acl }),
      })),
      // Structure and integrity
      { name: 'oversized token (> ORGHUB_JWT_MAX_LENGTH), validly signed', reason: 'token_too_large', make: () => issuer.sign({ sub: 'u', org: 'acme', pad: 'p'.repeat(9000) }) },
      { name: 'oversized garbage', reason: 'token_too_large', make: () => 'A'.repeat(100_000) },
      { name: 'payload with the org swapped, signature kept', reason: 'bad_signature', make: async () => {
        const t = await issuer.token('acme', 'u');
        return withPart(t, 1, b64u({ ...decodePart(t, 1), org: 'victim' }));
      } },
      { name: 'payload with an added admin role, signature kept (EdDSA)', reason: 'bad_signature', make: async () => {
        const t = await issuer.sign({ sub: 'u', org: 'acme', roles: [] }, { alg: 'EdDSA' });
        return withPart(t, 1, b64u({ ...decodePart(t, 1), roles: ['admin'] }));
      } },
      { name: 'tampered ES256 signature', reason: 'bad_signature', make: async () => {
        const t = await issuer.token('acme', 'u');
        return withPart(t, 2, flipChar(t.split('.')[2]!));
      } },
      { name: 'tampered RS256 signature', reason: 'bad_signature', make: async () => {
        const t = await issuer.sign({ sub: 'u', org: 'acme' }, { alg: 'RS256' });
        return withPart(t, 2, flipChar(t.split('.')[2]!));
      } },
      { name: 'signature of another valid token', reason: 'bad_signature', make: async () => {
        const a = await issuer.token('acme', 'u');
        const b = await issuer.token('victim', 'u');
        return withPart(b, 2, a.split('.')[2]!);
      } },
      { name: 'empty signature', reason: 'bad_signature', make: async () => withPart(await issuer.token('acme', 'u'), 2, '') },
      { name: 'truncated token (signature cut short)', reason: 'bad_signature', make: async () => (await issuer.token('acme', 'u')).slice(0, -10) },
      { name: 'truncated token (two parts)', reason: 'token_malformed', make: async () => (await issuer.token('acme', 'u')).split('.').slice(0, 2).join('.') },
      { name: 'five-part token (JWE shape)', reason: 'token_malformed', make: async () => `${await issuer.token('acme', 'u')}.a.b` },
      { name: 'trailing newline', reason: 'token_malformed', make: async () => `${await issuer.token('acme', 'u')}\n` },
      { name: 'leading space', reason: 'token_malformed', make: async () => ` ${await issuer.token('acme', 'u')}` },
      { name: 'header that is not base64url JSON', reason: 'token_malformed', make: async () => withPart(await issuer.token('acme', 'u'), 0, b64u('not json')) },
      { name: 'header that is a JSON array', reason: 'token_malformed', make: async () => withPart(await issuer.token('acme', 'u'), 0, b64u([{ alg: 'ES256' }])) },
      { name: 'payload that is not JSON (re-signed by nobody)', reason: 'bad_signature', make: async () => withPart(await issuer.token('acme', 'u'), 1, b64u('{oops')) },
      { name: 'payload that is not JSON, validly HMAC-signed', reason: 'token_malformed', v: () => withSecret, make: () => {
        const input = `${b64u({ alg: 'HS256' })}.${b64u('[1,2]')}`;
        return `${input}.${createHmac('sha256', SECRET).update(input).digest('base64url')}`;
      } },
      { name: 'garbage "abc"', reason: 'token_malformed', make: () => 'abc' },
      { name: 'garbage "a.b.c"', reason: 'token_malformed', make: () => 'a.b.c' },
      { name: 'garbage "..."', reason: 'token_malformed', make: () => '...' },
      { name: 'garbage ".."', reason: 'token_malformed', make: () => '..' },
      { name: 'garbage with non-ASCII', reason: 'token_malformed', make: () => 'ëyJ.ëyJ.sig' },
      { name: 'garbage "Bearer x.y.z"', reason: 'token_malformed', make: () => 'Bearer x.y.z' },
      { name: 'empty string', reason: 'token_missing', make: () => '' },
      // Lifetime and header type (issue 10's JWT hardening)
      { name: 'lifetime beyond ORGHUB_JWT_MAX_TTL (default 1 day)', reason: 'token_lifetime_too_long', make: () => {
        const now = Math.floor(Date.now() / 1000);
        return issuer.sign({ sub: 'u', org: 'acme', iat: now, exp: now + 2 * 86400 });
      } },
      { name: 'iat in the future', reason: 'bad_claim:iat', make: () => {
        const now = Math.floor(Date.now() / 1000);
        return issuer.sign({ sub: 'u', org: 'acme', iat: now + 3600, exp: now + 7200 });
      } },
      { name: 'a header typ other than ORGHUB_JWT_TYP', reason: 'bad_typ', v: () => typed, make: () => issuer.sign({ sub: 'u', org: 'acme' }, { header: { typ: 'JWT' } }) },
    ];

    for (const c of cases) {
      it(`verifier - refuses ${c.name} with ${c.reason}`, async () => {
        const token = await c.make();
        await refused((c.v?.() ?? verifier).verify(token), c.reason);
      });
    }

    it('verifier - refuses a non-string token with token_missing', async () => {
      await refused(verifier.verify(undefined as unknown as string), 'token_missing');
    });

    it('verifier - every refusal reason joseVerifier.ts raises is expected by a test in this file', () => {
      const reasons = verifierReasons();
      // Positive control: the extraction finds the reasons every case above relies on.
      assert.ok(reasons.includes('bad_signature') && reasons.includes('key_header_forbidden'), reasons.join(','));
      const self = readFileSync(new URL(import.meta.url), 'utf8');
      const untested = reasons.filter((r) => !UNREACHABLE_REASONS.includes(r) && !self.includes(`reason: '${r}'`) && !self.includes(`, '${r}')`));
      assert.deepEqual(untested, [], 'refusal reasons no test in joseVerifier.test.ts expects: add a case for each');
    });

    it('verifier - never fetched anything a token named (jku/x5u)', async () => {
      // A jwk/jku/x5u token against every verifier; the key server must have seen nothing at all.
      for (const v of [verifier, withSecret]) {
        await refused(v.verify(await attackerSign({ jku: `${keyServerUrl}/a`, kid: 'x' })), 'key_header_forbidden');
        await refused(v.verify(await attackerSign({ x5u: `${keyServerUrl}/b` })), 'key_header_forbidden');
      }
      // Barrier and positive control instead of a sleep: a request of our own, sent after every
      // verify settled, is counted; a fetch a verify had started would have reached the server first.
      await (await fetch(`${keyServerUrl}/control`)).arrayBuffer();
      assert.equal(keyServerHits, 1, 'only the control request reached the key server');
    });

    it('verifier - reasons never echo token content', async () => {
      try {
        await verifier.verify(await issuer.sign({ sub: 'u', org: 'secret.value' }));
        assert.fail('accepted');
      } catch (err) {
        assert.ok(err instanceof AuthError);
        assert.ok(!err.message.includes('secret'), err.message);
      }
    });
  });

  describe('key rotation', () => {
    it('verifier - reload() picks up a rewritten JWKS file and drops the old keys', async () => {
      const a = await createTestIssuer();
      const b = await createTestIssuer();
      const v = await createJoseVerifier(loadConfig(a.env));
      const oldToken = await a.token('acme', 'u');
      assert.equal((await v.verify(oldToken)).sub, 'u');
      const { writeFileSync } = await import('node:fs');
      writeFileSync(a.jwksPath, readFileSync(b.jwksPath));
      await v.reload();
      await refused(v.verify(oldToken), 'unknown_kid');
      assert.equal((await v.verify(await b.token('acme', 'u2'))).sub, 'u2');
    });
  });

  describe('url jwks', () => {
    it('verifier - fetches a URL JWKS, refuses unknown kids, and reports an unreachable one as unavailable', async () => {
      let hits = 0;
      const jwksText = readFileSync(issuer.jwksPath, 'utf8');
      const srv = createServer((_req, res) => {
        hits++;
        res.setHeader('content-type', 'application/json');
        res.end(jwksText);
      });
      await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
      const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/jwks.json`;
      try {
        const v = await createJoseVerifier(loadConfig({ ...issuer.env, ORGHUB_JWT_JWKS: url }), { jwksCooldownMs: 60_000 });
        for (const alg of ['ES256', 'EdDSA', 'RS256'] as const) {
          assert.equal((await v.verify(await issuer.sign({ sub: 'u', org: 'acme' }, { alg }))).org, 'acme');
        }
        await refused(v.verify(await attackerSign({ kid: 'nope' })), 'unknown_kid');
        await refused(v.verify(await attackerSign({ kid: jwks.ES256!.kid })), 'bad_signature');
        await refused(v.verify(await attackerSign({ jku: url })), 'key_header_forbidden');
        await refused(v.verify(hs256({ alg: 'HS256', kid: jwks.RS256!.kid }, claims(), pem('RS256'))), 'alg_not_allowed');
        assert.ok(hits >= 1 && hits <= 2, `hits ${hits}`); // warm-up (+ at most one refetch, then cooldown)
      } finally {
        srv.close();
        srv.closeAllConnections();
      }
      const dead = await createJoseVerifier(loadConfig({ ...issuer.env, ORGHUB_JWT_JWKS: url }), { jwksTimeoutMs: 500 });
      await assert.rejects(dead.verify(await issuer.token('acme', 'u')), (err: unknown) => {
        assert.ok(err instanceof HubError && !(err instanceof AuthError), String(err));
        assert.equal(err.code, 'unavailable');
        return true;
      });
    });
  });
});

describe('extractToken', () => {
  it('extractToken - takes a Bearer token, scheme case-insensitive', () => {
    assert.equal(extractToken('Bearer abc.def.ghi', ''), 'abc.def.ghi');
    assert.equal(extractToken('bearer abc.def.ghi', ''), 'abc.def.ghi');
    assert.equal(extractToken('BEARER   abc.def.ghi  ', ''), 'abc.def.ghi');
  });
  it('extractToken - prefers the header over the query', () => {
    assert.equal(extractToken('Bearer h.h.h', 'access_token=q.q.q'), 'h.h.h');
  });
  it('extractToken - reads access_token from a raw query, URL-decoded', () => {
    assert.equal(extractToken('', 'access_token=a.b.c'), 'a.b.c');
    assert.equal(extractToken('', '?x=1&access_token=a%2Eb.c&y=2'), 'a.b.c');
    assert.equal(extractToken('', 'foo=bar&access_token=eyJ%5Fx.y.z'), 'eyJ_x.y.z');
  });
  it('extractToken - falls back to the query when the header is not Bearer', () => {
    assert.equal(extractToken('Basic dXNlcjpwYXNz', 'access_token=a.b.c'), 'a.b.c');
  });
  it('extractToken - returns undefined when there is no token', () => {
    assert.equal(extractToken('', ''), undefined);
    assert.equal(extractToken('Bearer', ''), undefined);
    assert.equal(extractToken('Bearer   ', 'access_token='), undefined);
    assert.equal(extractToken('Basic abc', 'my_access_token=a.b.c'), undefined);
    assert.equal(extractToken('', 'access_tokenx=a.b.c'), undefined);
  });
  it('extractToken - survives malformed percent-encoding', () => {
    assert.equal(extractToken('', 'access_token=%E0%A4%A'), '\uFFFD%A');
  });
});
