import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AuthError } from '../errors.ts';
import { createCachingVerifier } from './cachingVerifier.ts';
import type { Principal, TokenVerifier } from './principal.ts';

/** A verifier that counts calls; the signature checks themselves are covered in joseVerifier.test.ts. */
function counting(exp: () => number): TokenVerifier & { calls: number } {
  const v = {
    calls: 0,
    async verify(token: string): Promise<Principal> {
      v.calls++;
      if (token.startsWith('bad')) throw new AuthError('bad_signature');
      return { sub: token, org: 'o', roles: [], exp: exp() };
    },
  };
  return v;
}

describe('caching verifier', () => {
  it('caching verifier - a token is verified once while fresh, failures are never cached', async () => {
    const inner = counting(() => Math.floor(Date.now() / 1000) + 3600);
    const v = createCachingVerifier(inner, { max: 10, ttlMs: 60_000 });
    assert.equal((await v.verify('t1')).sub, 't1');
    assert.equal((await v.verify('t1')).sub, 't1');
    assert.equal(inner.calls, 1);
    await assert.rejects(v.verify('bad1'), /bad_signature/);
    await assert.rejects(v.verify('bad1'), /bad_signature/);
    assert.equal(inner.calls, 3);
  });

  it('caching verifier - an expired token or a stale entry is verified again', async () => {
    let exp = Math.floor(Date.now() / 1000) - 1;
    const inner = counting(() => exp);
    const v = createCachingVerifier(inner, { max: 10, ttlMs: 60_000 });
    await v.verify('t');
    await v.verify('t');
    assert.equal(inner.calls, 2, 'a cached principal past exp must not be served');
    exp = Math.floor(Date.now() / 1000) + 3600;
    const short = createCachingVerifier(inner, { max: 10, ttlMs: 0 });
    await short.verify('u');
    await short.verify('u');
    assert.equal(inner.calls, 4, 'an entry past ttl must be re-verified');
  });

  it('caching verifier - the cache is bounded and evicts the oldest entry', async () => {
    const inner = counting(() => Math.floor(Date.now() / 1000) + 3600);
    const v = createCachingVerifier(inner, { max: 2, ttlMs: 60_000 });
    await v.verify('a');
    await v.verify('b');
    await v.verify('c'); // evicts a
    await v.verify('b');
    assert.equal(inner.calls, 3);
    await v.verify('a');
    assert.equal(inner.calls, 4);
  });

  it('caching verifier - a reused signature with another payload is a miss, never the cached principal', async () => {
    const inner = counting(() => Math.floor(Date.now() / 1000) + 3600);
    const v = createCachingVerifier(inner, { max: 10, ttlMs: 60_000 });
    assert.equal((await v.verify('hdr.payloadA.sig')).sub, 'hdr.payloadA.sig');
    assert.equal((await v.verify('hdr.payloadB.sig')).sub, 'hdr.payloadB.sig');
    assert.equal(inner.calls, 2);
  });
});
