import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Principal } from '../auth/principal.ts';
import { HubError } from '../errors.ts';
import { parseRule, RevocationList, ruleFromRequest } from './revocation.ts';

const NOW = 1_800_000_000_000;
const TTL = 3600;
const p = (over: Partial<Principal> = {}): Principal => ({ sub: 'alice', org: 'acme', roles: [], exp: NOW / 1000 + 600, iat: NOW / 1000 - 10, jti: 't1', ...over });
const invalid = (fn: () => unknown) => assert.throws(fn, (e: unknown) => e instanceof HubError && e.code === 'invalid');

describe('revocation rules', () => {
  it('revocation - each body shape becomes its rule, kept for the max token lifetime', () => {
    assert.deepEqual(ruleFromRequest('acme', { jti: 't1' }, NOW, TTL), { kind: 'jti', org: 'acme', jti: 't1', until: NOW + TTL * 1000 });
    assert.deepEqual(ruleFromRequest('acme', { session: 's1' }, NOW, TTL), { kind: 'session', org: 'acme', session: 's1', until: NOW + TTL * 1000 });
    assert.deepEqual(ruleFromRequest('acme', { sub: 'alice' }, NOW, TTL), { kind: 'sub', org: 'acme', sub: 'alice', issuedBefore: NOW / 1000 + 1, until: NOW + TTL * 1000 });
    // Tokens issued before `ib` are all expired by ib + max TTL: the rule lasts exactly that long.
    const ib = NOW / 1000 - 600;
    assert.deepEqual(ruleFromRequest('acme', { sub: 'alice', issuedBefore: ib }, NOW, TTL), { kind: 'sub', org: 'acme', sub: 'alice', issuedBefore: ib, until: (ib + TTL) * 1000 });
  });

  it('revocation - malformed bodies are refused with invalid', () => {
    for (const body of [null, [], 'x', {}, { jti: 't', sub: 'a' }, { org: 'other', jti: 't' }, { jti: '' }, { jti: 'x'.repeat(257) }, { jti: 5 }, { sub: 'a\nb' }, { sub: 'a\ud800' }, { sub: 'a', issuedBefore: 'now' }, { sub: 'a', issuedBefore: 1.5 }, { sub: 'a', issuedBefore: NOW / 1000 + 3600 }, { issuedBefore: 1 }, { session: 's', jti: 't' }]) {
      invalid(() => ruleFromRequest('acme', body, NOW, TTL));
    }
  });

  it('revocation - a list matches by jti, by sub and iat, and by session, in one org only', () => {
    const list = new RevocationList();
    list.add({ kind: 'jti', org: 'acme', jti: 't1', until: NOW + 1000 }, NOW);
    assert.equal(list.isRevoked(p(), undefined, NOW), true);
    assert.equal(list.isRevoked(p({ jti: 't2' }), undefined, NOW), false);
    assert.equal(list.isRevoked(p({ org: 'other' }), undefined, NOW), false, 'another org with the same jti is untouched');

    list.add({ kind: 'sub', org: 'acme', sub: 'bob', issuedBefore: NOW / 1000, until: NOW + 1000 }, NOW);
    assert.equal(list.isRevoked(p({ sub: 'bob', jti: 'x', iat: NOW / 1000 - 1 }), undefined, NOW), true);
    assert.equal(list.isRevoked(p({ sub: 'bob', jti: 'x', iat: NOW / 1000 }), undefined, NOW), false, 'issued at issuedBefore: not revoked');
    assert.equal(list.isRevoked(p({ sub: 'bob', jti: 'x', iat: undefined }), undefined, NOW), true, 'no iat: fail closed');

    list.add({ kind: 'session', org: 'acme', session: 's9', until: NOW + 1000 }, NOW);
    assert.equal(list.isRevoked(p({ jti: 'x' }), 's9', NOW), true);
    assert.equal(list.isRevoked(p({ jti: 'x' }), 's8', NOW), false);
    assert.equal(list.isRevoked(p(), undefined, NOW + 1000), false, 'expired rules no longer match');
  });

  it('revocation - merging keeps the stronger rule; replays and expired rules change nothing; prune forgets', () => {
    const list = new RevocationList();
    assert.equal(list.add({ kind: 'sub', org: 'a', sub: 's', issuedBefore: 200, until: NOW + 5000 }, NOW), true);
    assert.equal(list.add({ kind: 'sub', org: 'a', sub: 's', issuedBefore: 100, until: NOW + 1000 }, NOW), false);
    assert.equal(list.isRevoked(p({ org: 'a', sub: 's', iat: 150 }), undefined, NOW), true);
    assert.equal(list.add({ kind: 'jti', org: 'a', jti: 'j', until: NOW - 1 }, NOW), false);
    assert.equal(list.size, 1);
    list.prune(NOW + 5000);
    assert.equal(list.size, 0);
  });

  it('revocation - parseRule refuses anything malformed', () => {
    assert.deepEqual(parseRule({ kind: 'jti', org: 'a', jti: 'j', until: 5 }), { kind: 'jti', org: 'a', jti: 'j', until: 5 });
    for (const v of [null, 1, {}, { kind: 'jti', org: 'a', until: 5 }, { kind: 'jti', org: 'a', jti: 'j', until: Infinity }, { kind: 'sub', org: 'a', sub: 's', until: 5 }, { kind: 'x', org: 'a', until: 5 }]) {
      assert.equal(parseRule(v), undefined);
    }
  });
});
