import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CONNECT_REFUSALS, isSharedFilter, Reason, SUBACK_FAILURE_V4, subackRefusal } from './codes.ts';

describe('mqtt codes', () => {
  it('connack - refusals carry the 3.1.1 return code and MQTT 5 reason code of docs/mqtt.md', () => {
    assert.deepEqual(CONNECT_REFUSALS, {
      token_missing: { v4: 4, v5: 0x86 },
      token_invalid: { v4: 5, v5: 0x87 },
      will_not_granted: { v4: 5, v5: 0x87 },
      will_topic_invalid: { v4: 5, v5: 0x90 },
      client_id_required: { v4: 2, v5: 0x85 },
      auth_method_unsupported: { v4: 5, v5: 0x8c },
      session_store_unavailable: { v4: 3, v5: 0x88 },
      session_quota: { v4: 3, v5: 0x97 },
      connection_limit: { v4: 3, v5: 0x97 },
      unavailable: { v4: 3, v5: 0x88 },
    });
  });

  it('suback - MQTT 5 names each refusal; 3.1.1 has 0x80 for all', () => {
    assert.equal(subackRefusal('shared', 5), 0x9e);
    assert.equal(subackRefusal('invalid', 5), 0x8f);
    assert.equal(subackRefusal('denied', 5), 0x87);
    assert.equal(subackRefusal('quota', 5), 0x97);
    for (const r of ['shared', 'invalid', 'denied', 'quota'] as const) assert.equal(subackRefusal(r, 4), 0x80);
    assert.equal(SUBACK_FAILURE_V4, 0x80);
  });

  it('reason - server-side disconnect codes match the documented limits', () => {
    assert.equal(Reason.packetTooLarge, 0x95);
    assert.equal(Reason.messageRateTooHigh, 0x96);
    assert.equal(Reason.quotaExceeded, 0x97);
    assert.equal(Reason.keepAliveTimeout, 0x8d);
    assert.equal(Reason.sessionTakenOver, 0x8e);
    assert.equal(Reason.maximumConnectTime, 0xa0);
    assert.equal(Reason.topicAliasInvalid, 0x94);
    assert.equal(Reason.receiveMaximumExceeded, 0x93);
    assert.equal(Reason.disconnectWithWill, 0x04);
  });

  it('share - only the exact `$share/` prefix is a shared subscription', () => {
    assert.equal(isSharedFilter('$share/g/x/#'), true);
    assert.equal(isSharedFilter('$share/'), true);
    assert.equal(isSharedFilter('$share'), false);
    assert.equal(isSharedFilter('$SHARE/g/x'), false);
    assert.equal(isSharedFilter('a/$share/g'), false);
  });
});
