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
    assert.deepEqual(parseOrgChanges({ tier: 'gold', limits: { ORGHUB_LIMITS_RETAINED_BYTES: 10 } }), { tier: 'gold', limits: { ORGHUB_LIMITS_RETAINED_BYTES: 10 } });
    for (const b of [{}, { status: 'active' }, { tier: 'Gold' }, { limits: { x: 1 } }, { limits: { A: 1.5 } }, { settings: [] }, { settings: { s: 'x'.repeat(9000) } }, { auditRetentionDays: 0 }, [], null]) invalid(() => parseOrgChanges(b));
  });
  it('org - limits name known limits only, each with its field type and bounds (positive: every kind of field)', () => {
    const ok = { ORGHUB_LIMITS_PUBLISH_USER: 0.5, ORGHUB_LIMITS_COMMANDS_ORG: 0, ORGHUB_LIMITS_BURST_SECONDS: 1.5, ORGHUB_LIMITS_CONNECTIONS_ORG: 3, ORGHUB_LIMITS_MAX_MESSAGE_BYTES: 100, ORGHUB_LIMITS_INFLIGHT_COMMANDS: 1 };
    assert.deepEqual(parseOrgChanges({ limits: ok }).limits, ok);
    assert.deepEqual(parseCreateOrg({ org: 'a', limits: ok }, 1).limits, ok);
    const refused = (limits: unknown, msg: RegExp) => {
      for (const fn of [() => parseOrgChanges({ limits }), () => parseCreateOrg({ org: 'a', limits }, 1)]) assert.throws(fn, (e: unknown) => e instanceof HubError && e.code === 'invalid' && msg.test(e.message), JSON.stringify(limits));
    };
    refused({ ORGHUB_MQTT_MAX_RETAINED: 10 }, /^unknown limit "ORGHUB_MQTT_MAX_RETAINED"/);
    refused({ ORGHUB_LIMITS_PUBLISH_USER: 5, ORGHUB_LIMITS_RATE: 1 }, /^unknown limit "ORGHUB_LIMITS_RATE"/);
    refused({ __proto__x: 1 }, /^unknown limit/);
    refused({ ORGHUB_LIMITS_PUBLISH_USER: '5' }, /^limits\.ORGHUB_LIMITS_PUBLISH_USER must be number/);
    refused({ ORGHUB_LIMITS_MAX_MESSAGE_BYTES: 0 }, /^limits\.ORGHUB_LIMITS_MAX_MESSAGE_BYTES must be >= 1/);
    refused({ ORGHUB_LIMITS_CONNECTIONS_USER: 2.5 }, /^limits\.ORGHUB_LIMITS_CONNECTIONS_USER must be integer/);
    refused({ ORGHUB_LIMITS_PUBLISH_ORG: -1 }, /must be >= 0/);
    refused({ ORGHUB_LIMITS_BURST_SECONDS: null }, /must be number/);
    refused(Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`ORGHUB_LIMITS_X${i}`, 1])), /must NOT have more than 32 properties/);
  });
  it('org - suspend takes an optional short reason', () => {
    assert.deepEqual(parseSuspend(undefined), { reason: '' });
    assert.deepEqual(parseSuspend({ reason: 'unpaid' }), { reason: 'unpaid' });
    for (const b of [{ reason: 'x'.repeat(201) }, { reason: 'a\nb' }, { why: 'x' }, 'x']) invalid(() => parseSuspend(b));
  });
});
