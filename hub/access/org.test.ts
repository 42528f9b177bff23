import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { HubError } from '../errors.ts';
import { parseCreateOrg, parseOrgChanges, parseSuspend } from './org.ts';

const invalid = (fn: () => unknown) => assert.throws(fn, (e: unknown) => e instanceof HubError && e.code === 'invalid');

describe('org requests', () => {
  it('org - create fills defaults; ids follow the token org alphabet and never start with _', () => {
    assert.deepEqual(parseCreateOrg({ org: 'acme-1' }, 5), { org: 'acme-1', status: 'active', tier: 'standard', settings: {}, limits: {}, auditRetentionDays: 90, createdAt: 5, updatedAt: 5 });
    for (const org of ['', '_hub', 'a.b', 'a*', 'x'.repeat(65), 5, null]) invalid(() => parseCreateOrg({ org }, 5));
  });
  it('org - changes are checked field by field; unknown fields, empty patches and odd values are invalid', () => {
    assert.deepEqual(parseOrgChanges({ tier: 'gold', limits: { ORGHUB_MQTT_MAX_RETAINED: 10 } }), { tier: 'gold', limits: { ORGHUB_MQTT_MAX_RETAINED: 10 } });
    for (const b of [{}, { status: 'active' }, { tier: 'Gold' }, { limits: { x: 1 } }, { limits: { A: 1.5 } }, { settings: [] }, { settings: { s: 'x'.repeat(9000) } }, { auditRetentionDays: 0 }, [], null]) invalid(() => parseOrgChanges(b));
  });
  it('org - suspend takes an optional short reason', () => {
    assert.deepEqual(parseSuspend(undefined), { reason: '' });
    assert.deepEqual(parseSuspend({ reason: 'unpaid' }), { reason: 'unpaid' });
    for (const b of [{ reason: 'x'.repeat(201) }, { reason: 'a\nb' }, { why: 'x' }, 'x']) invalid(() => parseSuspend(b));
  });
});
