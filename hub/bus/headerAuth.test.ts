import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHeaderAuth, MAX_TS_SKEW_MS, saneTs } from './headerAuth.ts';

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

  it('headerAuth - timestamps: absent is 0; non-finite, fractional or absurd ones become the receive time', () => {
    assert.equal(saneTs(undefined, NOW), 0);
    assert.equal(saneTs('', NOW), 0);
    assert.equal(saneTs(String(NOW - 5), NOW), NOW - 5);
    for (const bad of ['Infinity', '-Infinity', 'NaN', '1e400', 'abc', '1.5', String(NOW + MAX_TS_SKEW_MS + 1), '0', '-1', String(2 ** 60)]) {
      assert.equal(saneTs(bad, NOW), NOW, bad);
    }
  });
});
