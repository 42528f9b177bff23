import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { encodePublish } from './outbound.ts';
import { decodeEntry, encodeEntry, isExpired, messageExpiresAt, publishOf, remainingExpiryS, sessionExpiryMs } from './sessionCodec.ts';
import { queuedDeliveries } from './sessionResume.ts';
import type { BridgeContext } from './bridgeContext.ts';

describe('mqtt session codec', () => {
  it('entries - round-trip topic, payload bytes, DUP and expiry; anything else decodes to undefined', () => {
    const m = { topic: 'a/b', payload: Buffer.from([0, 255, 10]), dup: true, expiresAt: 1234 };
    assert.deepEqual(decodeEntry(encodeEntry(m)), m);
    assert.equal(decodeEntry(Buffer.from('junk')), undefined);
    const bad = encodeEntry(m);
    bad[0] = 9;
    assert.equal(decodeEntry(bad), undefined, 'unknown format');
    assert.equal(decodeEntry(encodeEntry(m).subarray(0, 7)), undefined, 'truncated metadata');
  });

  it('session expiry - 3.1.1 clean 0 gets the default, clean 1 none; MQTT 5 its interval capped (0xFFFFFFFF too)', () => {
    assert.equal(sessionExpiryMs(4, false, undefined, 7200, 86400), 7200_000);
    assert.equal(sessionExpiryMs(4, true, undefined, 7200, 86400), 0);
    assert.equal(sessionExpiryMs(4, false, undefined, 90000, 86400), 86400_000, 'the default is capped too');
    assert.equal(sessionExpiryMs(5, false, 60, 7200, 86400), 60_000);
    assert.equal(sessionExpiryMs(5, true, 0xffffffff, 7200, 86400), 86400_000);
    assert.equal(sessionExpiryMs(5, false, undefined, 7200, 86400), 0, 'MQTT 5 without an interval keeps nothing');
  });

  it('message expiry - absolute time, whole seconds left (at least 1), 0 never expires', () => {
    assert.equal(messageExpiresAt(10, 1000), 11_000);
    assert.equal(messageExpiresAt(undefined, 1000), 0);
    assert.equal(remainingExpiryS(11_000, 1000), 10);
    assert.equal(remainingExpiryS(1500, 1000), 1);
    assert.equal(isExpired(0, 1e12), false);
    assert.equal(isExpired(1000, 1000), true);
    assert.equal(isExpired(1001, 1000), false);
  });

  it('publishOf - reads back a PUBLISH the bridge encoded (both versions)', () => {
    for (const v of [4, 5] as const) {
      const p = publishOf(encodePublish({ topic: 't/x', payload: Buffer.from('hi'), retain: false, expiryS: 30 }, 1, v), v);
      assert.equal(p?.topic, 't/x');
      assert.equal(p?.payload.toString(), 'hi');
      assert.equal(p?.properties?.messageExpiryInterval, v === 5 ? 30 : undefined);
    }
  });

  it('queued deliveries - expired ones are dropped and counted, ungranted topics dropped, DUP kept, oldest first', () => {
    const ctx = { stats: { queued: 0, dropped: { overflow: 0, expired: 0, unavailable: 0 }, retainedSent: 0, pauses: 0, inboundQueuedBytes: 0 } } as unknown as BridgeContext;
    const now = 10_000;
    const entries = [
      encodeEntry({ topic: 'a/1', payload: Buffer.from('old'), dup: true, expiresAt: 0 }),
      encodeEntry({ topic: 'a/2', payload: Buffer.from('gone'), dup: false, expiresAt: 9_000 }),
      encodeEntry({ topic: 'b/1', payload: Buffer.from('not granted now'), dup: false, expiresAt: 0 }),
      encodeEntry({ topic: 'a/3', payload: Buffer.from('fresh'), dup: false, expiresAt: 20_000 }),
    ];
    const out = queuedDeliveries(ctx, entries, new Map([['a/#', 1 as const]]), 5, Infinity, now).map((d) => publishOf(d.template, 5)!);
    assert.deepEqual(out.map((p) => [p.topic, p.payload.toString(), p.dup, p.properties?.messageExpiryInterval]), [['a/1', 'old', true, undefined], ['a/3', 'fresh', false, 10]]);
    assert.equal(ctx.stats.dropped.expired, 1);
  });
});
