import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { defaultRoleGrants } from '../acl/roles.ts';
import { HubError } from '../errors.ts';
import { createKeyHasher, describeKey, newApiKey, parseApiKey, parseCreateRequest, parsePlatformKeyRequest, PLATFORM_KEY_ORG, type ApiKeyRecord } from './apiKey.ts';
import { isOrgId } from './org.ts';

const NOW = 1_800_000_000_000;
const invalid = (fn: () => unknown) => assert.throws(fn, (e: unknown) => e instanceof HubError && e.code === 'invalid');

describe('api keys', () => {
  it('apiKey - ohk_<16 hex>_<43 base64url>: 256-bit secrets, parsed back exactly', () => {
    const k = newApiKey();
    assert.match(k.key, /^ohk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    assert.equal(Buffer.from(k.secret, 'base64url').length, 32);
    assert.deepEqual(parseApiKey(k.key), { id: k.id, secret: k.secret });
    assert.notEqual(newApiKey().key, k.key);
    for (const bad of ['', 'ohk_', `ohk_${k.id}`, `ohk_${k.id}_${k.secret}x`, `ohk_${k.id.toUpperCase()}_${k.secret}`, `OHK_${k.id}_${k.secret}`, `ohk_${k.id}_${k.secret.slice(1)}`]) assert.equal(parseApiKey(bad), undefined, bad);
  });

  it('apiKey - stored as HMAC under the pepper, bound to the id; a different pepper, id or secret does not match', () => {
    const h = createKeyHasher('p'.repeat(32));
    const k = newApiKey();
    const rec = { id: k.id, hash: h.hash(k.id, k.secret) } as ApiKeyRecord;
    assert.equal(h.matches(rec, k.secret), true);
    assert.equal(h.matches(rec, newApiKey().secret), false);
    assert.equal(createKeyHasher('q'.repeat(32)).matches(rec, k.secret), false);
    assert.equal(h.matches({ ...rec, id: newApiKey().id }, k.secret), false);
    assert.doesNotMatch(rec.hash, new RegExp(k.secret));
    assert.equal(describeKey({ ...rec, org: 'o', name: '', roles: ['service'], createdAt: NOW, createdBy: 'a' }).hash, undefined, 'the hash is never shown');
  });

  it('apiKey - create requests: known roles only, ACL checked, future expiry, no extra fields', () => {
    assert.deepEqual(parseCreateRequest({ roles: ['service'], name: 'ingest', acl: { pub: ['telemetry/#'] }, expiresAt: new Date(NOW + 3600_000).toISOString() }, defaultRoleGrants, NOW), { name: 'ingest', roles: ['service'], acl: { pub: ['telemetry/#'] }, expiresAt: NOW + 3600_000 });
    for (const b of [null, [], {}, { roles: [] }, { roles: ['root'] }, { roles: ['__proto__'] }, { roles: 'service' }, { roles: ['service'], org: 'x' }, { roles: ['service'], acl: { publish: ['#'] } }, { roles: ['service'], acl: { pub: ['a/+b'] } }, { roles: ['service'], expiresAt: '2001-01-01T00:00:00Z' }, { roles: ['service'], expiresAt: 123 }, { roles: ['service'], name: 'x'.repeat(101) }, { roles: ['service'], name: 'a\nb' }]) {
      invalid(() => parseCreateRequest(b, defaultRoleGrants, NOW));
    }
  });

  it('apiKey - platform key requests: a name and an expiry, always and only the platform role; the owner org is one no tenant can be', () => {
    assert.deepEqual(parsePlatformKeyRequest(undefined, NOW), { name: '', roles: ['platform'], expiresAt: undefined });
    assert.deepEqual(parsePlatformKeyRequest({ name: 'ci', expiresAt: new Date(NOW + 3600_000).toISOString() }, NOW), { name: 'ci', roles: ['platform'], expiresAt: NOW + 3600_000 });
    for (const b of [{ roles: ['admin'] }, { org: 'acme' }, { acl: {} }, { name: 'a\nb' }, { expiresAt: '2020-01-01T00:00:00Z' }, [], 'x', null]) invalid(() => parsePlatformKeyRequest(b, NOW));
    assert.equal(isOrgId(PLATFORM_KEY_ORG), false, 'POST /v1/orgs (and the token org claim, same alphabet) refuse it');
  });
});
