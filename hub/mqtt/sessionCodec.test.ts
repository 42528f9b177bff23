import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { encodePublish, packetIdOffset } from './outbound.ts';
import { decodeEntry, encodeEntry, entryPublishSize, entryTopic, isExpired, messageExpiresAt, publishOf, remainingExpiryS, sessionExpiryMs, writeEntryPublish, type EntryPublish } from './sessionCodec.ts';
import { queuedDeliveries } from './sessionResume.ts';
import type { BridgeContext } from './bridgeContext.ts';

/** One entry's PUBLISH on its own, as the resume path builds it inside its one buffer (sessionResume.ts). */
function publishFromEntry(b: Buffer, version: 4 | 5, now: number): EntryPublish | 'expired' | undefined {
  const size = entryPublishSize(b, version, now);
  if (typeof size !== 'number') return size;
  const out = Buffer.allocUnsafe(size);
  const offset = writeEntryPublish(b, version, now, out, 0);
  return { topic: entryTopic(b), template: out, offset };
}

describe('mqtt session codec', () => {
  it('entries - round-trip topic, payload bytes, DUP and expiry; anything else decodes to undefined', () => {
    const m = { topic: 'a/b', payload: Buffer.from([0, 255, 10]), dup: true, expiresAt: 1234 };
    assert.deepEqual(decodeEntry(encodeEntry(m)), m);
    assert.equal(decodeEntry(Buffer.from('junk')), undefined);
    const bad = encodeEntry(m);
    bad[0] = 9;
    assert.equal(decodeEntry(bad), undefined, 'unknown format');
    assert.equal(decodeEntry(encodeEntry(m).subarray(0, 7)), undefined, 'truncated head');
    assert.equal(decodeEntry(encodeEntry(m).subarray(0, 13)), undefined, 'truncated topic');
  });

  it('entries - the first (JSON) format, which an older node may have queued, still decodes', () => {
    const meta = Buffer.from(JSON.stringify({ t: 'a/b', d: 1, e: 99 }));
    const head = Buffer.alloc(5);
    head[0] = 1;
    head.writeUInt32BE(meta.length, 1);
    assert.deepEqual(decodeEntry(Buffer.concat([head, meta, Buffer.from('pl')])), { topic: 'a/b', payload: Buffer.from('pl'), dup: true, expiresAt: 99 });
  });

  it('publishFromEntry - builds exactly the bytes mqtt-packet generates (both versions, DUP, expiry, UTF-8 topics, 1- to 3-byte lengths); expired ones are told', () => {
    const now = 1_000_000;
    const cases = [
      { topic: 'a/b', payload: Buffer.alloc(0), dup: false, expiresAt: 0 },
      { topic: 'dév/ü/€', payload: Buffer.from('hi'), dup: true, expiresAt: 0 },
      { topic: 't', payload: Buffer.alloc(200, 7), dup: false, expiresAt: now + 30_500 },
      { topic: 'x/'.repeat(100), payload: Buffer.alloc(20_000, 9), dup: true, expiresAt: now + 1 },
    ];
    for (const v of [4, 5] as const) {
      for (const m of cases) {
        const d = publishFromEntry(encodeEntry(m), v, now);
        assert.ok(d && d !== 'expired');
        const ref = encodePublish({ topic: m.topic, payload: m.payload, retain: false, dup: m.dup, expiryS: m.expiresAt ? remainingExpiryS(m.expiresAt, now) : undefined }, 1, v);
        assert.deepEqual(d.template, ref, `v${v} ${m.topic.slice(0, 10)} ${m.payload.length} B`);
        assert.equal(d.offset, packetIdOffset(ref));
        assert.equal(d.topic, m.topic);
      }
    }
    assert.equal(publishFromEntry(encodeEntry({ topic: 'a', payload: Buffer.from('x'), dup: false, expiresAt: now }), 5, now), 'expired');
    assert.equal(publishFromEntry(Buffer.from('junk'), 4, now), undefined);
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
  it('queued deliveries - one buffer for the whole queue, byte-equal to one encoding per entry, topics matched per run (mixed topics, legacy, expired, too large)', () => {
    const ctx = { stats: { queued: 0, dropped: { overflow: 0, expired: 0, unavailable: 0 }, retainedSent: 0, pauses: 0, inboundQueuedBytes: 0 } } as unknown as BridgeContext;
    const now = 50_000;
    const meta = Buffer.from(JSON.stringify({ t: 'a/legacy', d: 1 }));
    const legacyHead = Buffer.alloc(5);
    legacyHead[0] = 1;
    legacyHead.writeUInt32BE(meta.length, 1);
    const msgs = [
      { topic: 'a/x', payload: Buffer.from('1'), dup: true, expiresAt: 0 },
      { topic: 'a/x', payload: Buffer.from('2'), dup: false, expiresAt: now + 9_000 },
      // same length, other bytes, not granted: the run's decision must not carry over
      { topic: 'b/x', payload: Buffer.from('3'), dup: false, expiresAt: 0 },
      { topic: 'a/y', payload: Buffer.from('4'), dup: false, expiresAt: now - 1 },
      { topic: 'a/y', payload: Buffer.alloc(300, 5), dup: false, expiresAt: 0 },
      { topic: 'a/dév', payload: Buffer.from('6'), dup: false, expiresAt: 0 },
    ];
    const entries = [...msgs.map(encodeEntry), Buffer.concat([legacyHead, meta, Buffer.from('7')]), encodeEntry({ topic: 'a/x', payload: Buffer.from('8'), dup: false, expiresAt: 0 })];
    const subs = new Map<string, 0 | 1>([['a/#', 1]]);
    for (const v of [4, 5] as const) {
      ctx.stats.dropped.expired = 0;
      const out = queuedDeliveries(ctx, entries, subs, v, 200, now);
      const parsed = out.map((d) => publishOf(d.template, v)!);
      assert.deepEqual(parsed.map((p) => [p.topic, p.payload.toString(), p.dup]), [['a/x', '1', true], ['a/x', '2', false], ['a/dév', '6', false], ['a/legacy', '7', true], ['a/x', '8', false]]);
      assert.equal(ctx.stats.dropped.expired, 1);
      // byte-equal to the per-entry encoding, packet id at the offset given
      for (const [i, e] of [entries[0], entries[1], entries[5]].entries()) {
        const one = publishFromEntry(e, v, now);
        assert.ok(one && one !== 'expired');
        assert.deepEqual(out[i].template, one.template);
        assert.equal(out[i].offset, one.offset);
      }
      // the format-2 encodings share one allocation (one per resume, not per message)
      const own = [out[0], out[1], out[2], out[4]].map((d) => d.template);
      for (let i = 1; i < own.length; i++) {
        assert.equal(own[i].buffer, own[0].buffer, 'one buffer for the queue');
        assert.equal(own[i].byteOffset, own[i - 1].byteOffset + own[i - 1].length, 'back to back, in queue order');
      }
    }
  });
});
