import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { ORG_LIMIT_FIELDS, orgLimitsSchema, overrideFromDirectory } from './directoryTiers.ts';
import { parseOrgOverrides, TIER_DEFAULTS, TierTable } from './tiers.ts';

describe('limits - org directory overrides (pure)', () => {
  it('limits - directory names map to tier fields; unknown names and non-limit tiers are reported, not applied', () => {
    const { over, ignored, problem } = overrideFromDirectory({ tier: 'free', limits: { ORGHUB_LIMITS_PUBLISH_USER: 5, ORGHUB_LIMITS_BURST_SECONDS: 1, ORGHUB_LIMITS_CONNECTIONS_ORG: 3, ORGHUB_LIMITS_MAX_MESSAGE_BYTES: 100, ORGHUB_MQTT_MAX_RETAINED: 9 } });
    assert.deepEqual(over, { tier: 'free', publish: { user: 5 }, burstSeconds: 1, connections: { org: 3 }, maxMessageBytes: 100 });
    assert.deepEqual(ignored, ['ORGHUB_MQTT_MAX_RETAINED']);
    assert.equal(problem, undefined);
    const org = overrideFromDirectory({ tier: 'standard', limits: { ORGHUB_LIMITS_ORG_BURST_SECONDS: 1.5, ORGHUB_LIMITS_BURST_SECONDS: 3 } });
    assert.deepEqual(org.over, { tier: 'standard', orgBurstSeconds: 1.5, burstSeconds: 3 });
    assert.match(overrideFromDirectory({ tier: 'free', limits: { ORGHUB_LIMITS_ORG_BURST_SECONDS: 0 } }).problem!, /orgBurstSeconds must be >= 0.01/);
    const gold = overrideFromDirectory({ tier: 'gold', limits: { ORGHUB_LIMITS_PUBLISH_ORG: 10 } });
    assert.deepEqual(gold.over, { publish: { org: 10 } });
    assert.deepEqual(gold.ignored, ['tier gold']);
  });

  it('limits - an override the schema refuses is dropped whole, keeping the tier', () => {
    const r = overrideFromDirectory({ tier: 'enterprise', limits: { ORGHUB_LIMITS_MAX_MESSAGE_BYTES: 0, ORGHUB_LIMITS_PUBLISH_ORG: 10 } });
    assert.deepEqual(r.over, { tier: 'enterprise' });
    assert.match(r.problem!, /maxMessageBytes/);
  });

  it('limits - the directory wins over ORGHUB_LIMITS_ORGS, which wins over the read model; clearing falls back', () => {
    const t = new TierTable('standard', {}, parseOrgOverrides('{"acme":{"tier":"free","publish":{"user":3,"org":4}}}'));
    t.setDynamic('acme', { tier: 'enterprise', publish: { connection: 1 } });
    assert.deepEqual(t.limitsOf('acme').publish, { connection: 1, user: 3, org: 4 }, 'config over read model, on the config tier');
    t.setDirectory('acme', overrideFromDirectory({ tier: 'standard', limits: { ORGHUB_LIMITS_PUBLISH_USER: 2 } }).over);
    assert.equal(t.tierOf('acme'), 'standard');
    assert.deepEqual(t.limitsOf('acme').publish, { connection: 1, user: 2, org: 4 });
    assert.equal(t.limitsOf('acme').connections.org, TIER_DEFAULTS.standard.connections.org);
    assert.deepEqual(t.limitsOf('other'), TIER_DEFAULTS.standard, 'another org is untouched');
    t.setDirectory('acme', undefined);
    assert.equal(t.tierOf('acme'), 'free');
    assert.deepEqual(t.limitsOf('acme').publish, { connection: 1, user: 3, org: 4 });
  });

  it('limits - the OpenAPI OrgLimits schema names exactly the directory limits, with the same types and bounds', () => {
    const doc = parse(readFileSync(new URL('../../docs/openapi.yaml', import.meta.url), 'utf8')) as any;
    const api = doc.components.schemas.OrgLimits;
    assert.deepEqual(Object.keys(api.properties).sort(), Object.keys(ORG_LIMIT_FIELDS).sort());
    assert.equal(api.additionalProperties, false);
    for (const [name, s] of Object.entries(orgLimitsSchema.properties) as [string, any][]) {
      const { description: _, ...documented } = api.properties[name];
      assert.deepEqual(documented, { type: s.type, minimum: s.minimum, maximum: s.maximum }, name);
    }
  });
});
