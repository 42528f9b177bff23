import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { EarlyPackets, MAX_EARLY_BYTES, MAX_QUEUED_BYTES, PublishBacklog, takePubacks } from './inboundGate.ts';

describe('mqtt inbound gate', () => {
  it('takePubacks - takes the leading PUBACKs mqtt-packet would parse to the same ids, and stops at anything else', () => {
    const gen = (p: Packet, v: 4 | 5 = 4) => mqttPacket.generate(p, { protocolVersion: v });
    const chunk = Buffer.concat([gen({ cmd: 'puback', messageId: 1 }), gen({ cmd: 'puback', messageId: 65535 }), gen({ cmd: 'puback', messageId: 300 }), gen({ cmd: 'pingreq' }), gen({ cmd: 'puback', messageId: 7 })]);
    const ids: number[] = [];
    const n = takePubacks(chunk, 4, (id) => ids.push(id));
    assert.deepEqual(ids, [1, 65535, 300]);
    assert.equal(n, 12, 'stops at PINGREQ; the rest is for the parser');
    // the same ids as mqtt-packet parses
    const parsed: number[] = [];
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (p: Packet) => p.cmd === 'puback' && parsed.push(p.messageId!));
    parser.parse(chunk.subarray(0, n));
    assert.deepEqual(parsed, ids);
    // MQTT 5: reason 0x00 without properties (as mqtt-packet and MQTT.js write it) is taken too
    const v5 = Buffer.concat([gen({ cmd: 'puback', messageId: 9 }, 5), Buffer.from([0x40, 0x03, 0, 10, 0]), Buffer.from([0x40, 0x02, 0, 11])]);
    const got: number[] = [];
    assert.equal(takePubacks(v5, 5, (id) => got.push(id)), v5.length);
    assert.deepEqual(got, [9, 10, 11]);
    // another reason code, properties, a 3.1.1 session, or a partial packet: left to the parser
    assert.equal(takePubacks(gen({ cmd: 'puback', messageId: 2, reasonCode: 0x10 }, 5), 5, () => assert.fail('reason 0x10')), 0);
    assert.equal(takePubacks(gen({ cmd: 'puback', messageId: 2, properties: { reasonString: 'x' } }, 5), 5, () => assert.fail('properties')), 0);
    assert.equal(takePubacks(gen({ cmd: 'puback', messageId: 2 }, 5), 4, () => assert.fail('3.1.1 has no reason code')), 0);
    assert.equal(takePubacks(gen({ cmd: 'puback', messageId: 2 }).subarray(0, 3), 4, () => assert.fail('partial')), 0);
    assert.equal(takePubacks(gen({ cmd: 'puback', messageId: 2 }, 5).subarray(0, 5), 5, () => assert.fail('partial v5')), 0);
  });

  it('early packets - kept in order up to the byte bound, then refused; take() empties', () => {
    const e = new EarlyPackets();
    assert.equal(e.push({ cmd: 'pingreq', length: 10 } as Packet), true);
    assert.equal(e.push({ cmd: 'pingreq', length: MAX_EARLY_BYTES } as Packet), false);
    assert.deepEqual(e.take().map((p) => p.cmd), ['pingreq']);
    assert.deepEqual(e.take(), []);
  });

  it('publish backlog - pauses past the bound, resumes under half, refuses past four times', () => {
    const calls: string[] = [];
    const stats = { pauses: 0, inboundQueuedBytes: 0, holds: 0 };
    const b = new PublishBacklog({ pause: () => calls.push('pause'), resume: () => calls.push('resume') }, stats);
    assert.equal(b.add(MAX_QUEUED_BYTES), true);
    assert.deepEqual(calls, [], 'at the bound, still read');
    assert.equal(b.add(1), true);
    assert.deepEqual(calls, ['pause']);
    b.taken(MAX_QUEUED_BYTES / 2);
    assert.deepEqual(calls, ['pause'], 'over half: still paused');
    b.taken(1);
    assert.deepEqual(calls, ['pause', 'resume']);
    assert.deepEqual(stats, { pauses: 1, inboundQueuedBytes: MAX_QUEUED_BYTES / 2, holds: 0 });
    assert.equal(b.add(MAX_QUEUED_BYTES * 4), false, 'past four times the bound');
    b.clear();
    assert.equal(stats.inboundQueuedBytes, 0, 'what never gets handled leaves the gauge');
  });

  it('PublishBacklog - a hold stops reading for its time, and reading stays paused while the queue is also over its bound', async () => {
    const calls: string[] = [];
    const stats = { pauses: 0, inboundQueuedBytes: 0, holds: 0 };
    const b = new PublishBacklog({ pause: () => calls.push('pause'), resume: () => calls.push('resume') }, stats);
    const t0 = performance.now();
    const held = b.hold(30);
    void b.hold(5); // already held: no second pause
    assert.deepEqual(calls, ['pause']);
    assert.equal(b.add(MAX_QUEUED_BYTES + 1), true);
    await held;
    assert.ok(performance.now() - t0 >= 29, 'resolved when the hold ended');
    assert.deepEqual(calls, ['pause'], 'the queue is still over its bound: no resume');
    b.taken(MAX_QUEUED_BYTES + 1);
    assert.deepEqual(calls, ['pause', 'resume']);
    assert.equal(stats.holds, 1);
    // a transport that cannot pause is not paused, but the hold still resolves after its time
    await new PublishBacklog({}, { pauses: 0, inboundQueuedBytes: 0, holds: 0 }).hold(1);
  });
});
