import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair } from 'jose';
import { ConfigError } from '../errors.ts';
import { importJwks, loadJwksFile } from './jwks.ts';

async function publicJwk(alg: 'ES256' | 'EdDSA' | 'RS256' | 'ES384', extra: Record<string, unknown> = {}) {
  const { publicKey } = await generateKeyPair(alg, alg === 'RS256' ? { modulusLength: 2048 } : undefined);
  return { ...(await exportJWK(publicKey)), ...extra };
}

async function privateJwk() {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  return { ...(await exportJWK(privateKey)), kid: 'leaked' };
}

describe('jwks', () => {
  it('jwks - imports ES256, EdDSA and RS256 keys and selects by kid and alg', async () => {
    const { ring, skipped } = await importJwks({
      keys: [await publicJwk('ES256', { kid: 'e' }), await publicJwk('EdDSA', { kid: 'd' }), await publicJwk('RS256', { kid: 'r' })],
    });
    assert.equal(ring.size, 3);
    assert.deepEqual(skipped, []);
    assert.equal(typeof ring.select('ES256', 'e'), 'object');
    assert.equal(typeof ring.select('EdDSA', 'd'), 'object');
    assert.equal(typeof ring.select('RS256', 'r'), 'object');
    assert.equal(ring.select('RS256', 'e'), 'alg_mismatch');
    assert.equal(ring.select('ES256', 'nope'), 'unknown_kid');
    assert.equal(typeof ring.select('ES256', undefined), 'object');
  });

  it('jwks - a kid-less token has no key when two keys share its alg', async () => {
    const { ring } = await importJwks({ keys: [await publicJwk('ES256', { kid: 'a' }), await publicJwk('ES256', { kid: 'b' })] });
    assert.equal(ring.select('ES256', undefined), 'unknown_kid');
    assert.equal(ring.select('EdDSA', undefined), 'unknown_kid');
  });

  it('jwks - skips oct, P-384, enc-use, short RSA and foreign-alg keys, never as HMAC secrets', async () => {
    const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' });
    const { ring, skipped } = await importJwks({
      keys: [
        { kty: 'oct', k: Buffer.from('s'.repeat(32)).toString('base64url'), kid: 'oct', alg: 'HS256' },
        await publicJwk('ES384', { kid: 'p384' }),
        await publicJwk('ES256', { kid: 'enc', use: 'enc' }),
        await publicJwk('RS256', { kid: 'ps', alg: 'PS256' }),
        await publicJwk('ES256', { kid: 'noverify', key_ops: ['encrypt'] }),
        { ...rsa1024, kid: 'short' },
        await publicJwk('ES256', { kid: 'good' }),
      ],
    });
    assert.equal(ring.size, 1);
    assert.equal(skipped.length, 6);
    for (const kid of ['oct', 'p384', 'enc', 'ps', 'noverify', 'short']) {
      assert.equal(ring.select('ES256', kid), 'unknown_kid', kid);
      assert.equal(ring.select('RS256', kid), 'unknown_kid', kid);
    }
  });

  it('jwks - refuses private key material, duplicate kids, no usable keys and non-JWKS documents', async () => {
    const e = await publicJwk('ES256', { kid: 'same' });
    const cases: [string, unknown][] = [
      ['private key', { keys: [await privateJwk()] }],
      ['duplicate kid', { keys: [e, { ...e }] }],
      ['only oct', { keys: [{ kty: 'oct', k: 'AAAA' }] }],
      ['empty', { keys: [] }],
      ['no keys array', { kty: 'EC' }],
      ['array', [e]],
      ['null', null],
      ['non-string kid', { keys: [{ ...e, kid: 3 }] }],
    ];
    for (const [name, doc] of cases) {
      await assert.rejects(importJwks(doc), ConfigError, name);
    }
  });

  it('jwks - loadJwksFile names the variable for a missing or non-JSON file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'orghub-jwks-'));
    await assert.rejects(loadJwksFile(join(dir, 'missing.json')), (err: unknown) => err instanceof ConfigError && /ORGHUB_JWT_JWKS.*ENOENT/.test(err.message));
    writeFileSync(join(dir, 'bad.json'), '{not json');
    await assert.rejects(loadJwksFile(join(dir, 'bad.json')), (err: unknown) => err instanceof ConfigError && /not valid JSON/.test(err.message));
  });
});
