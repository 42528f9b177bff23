import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { COMMAND_MAX_SKEW_MS, createHeaderAuth, MAX_TS_SKEW_MS, saneTs } from './headerAuth.ts';

const NOW = 1_800_000_000_000;
const auth = createHeaderAuth('s'.repeat(32));
const subject = 'hub.acme.devices.d1.t';

describe('NATS header authentication', () => {
  it('headerAuth - a signed from is believed; unsigned, mis-signed or moved ones are dropped', () => {
    const ts = String(NOW);
    const sig = auth.sign(subject, 'alice', ts);
    assert.deepEqual(auth.check(subject, 'alice', ts, sig, NOW), { from: 'alice', ts: NOW });
    assert.deepEqual(auth.check(subject, 'alice', ts, undefined, NOW), { ts: NOW }, 'no signature');
    assert.deepEqual(auth.check(subject, 'mallory', ts, sig, NOW), { ts: NOW }, 'signature of another from');
    assert.deepEqual(auth.check('hub.other.devices.d1.t', 'alice', ts, sig, NOW), { ts: NOW }, 'replayed on another subject');
    assert.deepEqual(auth.check(subject, 'alice', ts, createHeaderAuth('x'.repeat(32)).sign(subject, 'alice', ts), NOW), { ts: NOW }, 'another secret');
    assert.deepEqual(auth.check(subject, 'alice', ts, 'A'.repeat(22), NOW), { ts: NOW });
    assert.deepEqual(auth.check(subject, 'alice', ts, 'short', NOW), { ts: NOW });
  });

  it('headerAuth - a command signature holds for its subject, from, ts and bytes only, and for COMMAND_MAX_SKEW_MS', () => {
    const ts = String(NOW);
    const bytes = Buffer.from('{"commandId":"c1"}');
    const sig = auth.signCommand(subject, 'alice', ts, bytes);
    assert.equal(sig.length, 43);
    assert.equal(auth.checkCommand(subject, 'alice', ts, bytes, sig, NOW), true);
    assert.equal(auth.checkCommand(subject, 'alice', ts, bytes, sig, NOW + COMMAND_MAX_SKEW_MS), true, 'at the edge of the window');
    assert.equal(auth.checkCommand(subject, 'alice', ts, bytes, sig, NOW + COMMAND_MAX_SKEW_MS + 1), false, 'stale');
    assert.equal(auth.checkCommand(subject, 'alice', ts, Buffer.from('{"commandId":"c2"}'), sig, NOW), false, 'other bytes');
    assert.equal(auth.checkCommand('hub.acme.devices.d2.t', 'alice', ts, bytes, sig, NOW), false, 'another subject');
    assert.equal(auth.checkCommand(subject, 'mallory', ts, bytes, sig, NOW), false, 'another from');
    assert.equal(auth.checkCommand(subject, 'alice', String(NOW + 1), bytes, sig, NOW), false, 'another ts');
    assert.equal(auth.checkCommand(subject, 'alice', ts, bytes, undefined, NOW), false, 'unsigned');
    assert.equal(auth.checkCommand(subject, undefined, ts, bytes, sig, NOW), false, 'no from');
    assert.equal(auth.checkCommand(subject, 'alice', 'Infinity', bytes, sig, NOW), false);
    assert.equal(auth.checkCommand(subject, 'alice', ts, bytes, auth.sign(subject, 'alice', ts), NOW), false, 'the header signature is not a command signature');
    assert.equal(auth.checkCommand(subject, 'alice', ts, bytes, createHeaderAuth('x'.repeat(32)).signCommand(subject, 'alice', ts, bytes), NOW), false, 'another secret');
  });

  it('headerAuth - timestamps: absent is 0; non-finite, fractional or absurd ones become the receive time', () => {
    assert.equal(saneTs(undefined, NOW), 0);
    assert.equal(saneTs('', NOW), 0);
    assert.equal(saneTs(String(NOW - 5), NOW), NOW - 5);
    for (const bad of ['Infinity', '-Infinity', 'NaN', '1e400', 'abc', '1.5', String(NOW + MAX_TS_SKEW_MS + 1), '0', '-1', String(2 ** 60)]) {
      assert.equal(saneTs(bad, NOW), NOW, bad);
    }
  });
});
