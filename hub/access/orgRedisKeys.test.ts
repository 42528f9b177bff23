import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { globEscape, orgRedisKeys } from './orgRedisKeys.ts';

const layout = { historyPrefix: 'orghub:history:', presencePrefix: 'orghub:presence:', limitsPrefix: 'orghub:lim:', fleetPrefix: 'orghub:fleet:' };

describe('org redis keys (offboarding)', () => {
  it('orgRedisKeys - every store is named, prefixes end in ":" so acme never reaches acme-2 or another org\'s topic', () => {
    const { exact, prefixes, apiKeySet } = orgRedisKeys('acme', layout);
    assert.deepEqual(new Set([...exact, ...prefixes].map(([, k]) => k)), new Set(['retained', 'mqttSessions', 'history', 'presence', 'apiKeys', 'revocations', 'limits', 'fleet']));
    assert.ok(exact.some(([k]) => k === 'orghub:retained:acme'));
    assert.equal(apiKeySet, 'orghub:apikeys:acme');
    for (const [p] of prefixes) assert.ok(p.endsWith(':acme:'), p);
    const owns = (key: string) => exact.some(([k]) => k === key) || prefixes.some(([p]) => key.startsWith(p));
    // positive controls: the org's own keys
    for (const k of ['orghub:mqtt:session:acme:abc', 'orghub:mqtt:queue:acme:abc', 'orghub:history:s:acme:chat/x', 'orghub:presence:e:acme:@org', 'orghub:lim:b:pub:u:acme:alice', 'orghub:lim:c:o:acme']) assert.ok(owns(k), k);
    // another org whose id starts the same, and another org's topic that holds ":acme:"
    for (const k of ['orghub:retained:acme-2', 'orghub:mqtt:session:acme-2:abc', 'orghub:history:s:acme-2:x', 'orghub:history:s:beta:a:acme:b', 'orghub:lim:b:pub:o:acme-2', 'orghub:org:acme']) assert.ok(!owns(k), k);
  });
  it('globEscape - SCAN MATCH takes an id literally', () => {
    assert.equal(globEscape('a*b?[c]\\'), 'a\\*b\\?\\[c\\]\\\\');
    assert.equal(globEscape('acme-1_x'), 'acme-1_x');
  });
});
