import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import mqttPacket, { type Packet, type Parser } from 'mqtt-packet';
import { createPacketParser } from './packetParser.ts';

/** Every packet and error a parser emits for `chunks`, in order. */
function run(parser: Parser, chunks: Buffer[]): unknown[] {
  const out: unknown[] = [];
  parser.on('packet', (p: Packet) => out.push({ ...p }));
  parser.on('error', (e: Error) => out.push({ error: e.message }));
  for (const c of chunks) parser.parse(c);
  return out;
}

const v4: Packet[] = [
  { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: false, clientId: 'dev-1', keepalive: 30, username: 'u', password: Buffer.from('tok'), will: { topic: 'w/t', payload: Buffer.from('bye'), qos: 1, retain: true } },
  { cmd: 'subscribe', messageId: 7, subscriptions: [{ topic: 'a/+/c', qos: 1 }, { topic: '#', qos: 0 }] },
  { cmd: 'publish', topic: 'a/b/c', payload: Buffer.alloc(300, 7), qos: 1, messageId: 9, retain: false, dup: true },
  { cmd: 'publish', topic: 'ü/€', payload: Buffer.from(''), qos: 0, retain: true, dup: false },
  { cmd: 'puback', messageId: 9 },
  { cmd: 'pubrec', messageId: 10 },
  { cmd: 'pubrel', messageId: 10 },
  { cmd: 'pubcomp', messageId: 10 },
  { cmd: 'unsubscribe', messageId: 8, unsubscriptions: ['a/+/c'] },
  { cmd: 'pingreq' },
  { cmd: 'disconnect' },
];
const v5: Packet[] = [
  { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: 'dev-5', keepalive: 10, properties: { sessionExpiryInterval: 60, receiveMaximum: 20 } },
  { cmd: 'publish', topic: 't', payload: Buffer.from('x'), qos: 1, messageId: 1, retain: false, dup: false, properties: { messageExpiryInterval: 5, contentType: 'text/plain' } },
  { cmd: 'puback', messageId: 1, reasonCode: 0x97 },
  { cmd: 'disconnect', reasonCode: 0 },
];
const bytes = (ps: Packet[], protocolVersion: 4 | 5) => Buffer.concat(ps.map((p) => mqttPacket.generate(p, { protocolVersion })));

describe('packetParser', () => {
  it('packetParser - parses what the stock mqtt-packet parser parses, whole, split byte by byte, and malformed', () => {
    for (const [ps, version] of [[v4, 4], [v5, 5]] as const) {
      const all = bytes(ps, version);
      const whole = run(createPacketParser(4), [all]);
      assert.equal(whole.length, ps.length, `every ${version} packet comes out (positive control)`);
      assert.deepEqual(whole, run(mqttPacket.parser({ protocolVersion: 4 }), [all]));
      const split = [...all].map((b) => Buffer.from([b]));
      assert.deepEqual(run(createPacketParser(4), split), whole, 'the same packets when they arrive a byte at a time');
    }
    // Malformed: a reserved packet type (0), then a PUBLISH whose remaining length runs past 4 bytes.
    for (const bad of [Buffer.from([0x00, 0x00]), Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])]) {
      const lean = run(createPacketParser(4), [bad, mqttPacket.generate({ cmd: 'pingreq' })]);
      assert.ok(lean.some((e) => typeof e === 'object' && e !== null && 'error' in e), 'a malformed packet is an error');
      assert.deepEqual(lean, run(mqttPacket.parser({ protocolVersion: 4 }), [bad, mqttPacket.generate({ cmd: 'pingreq' })]));
    }
  });

  it('packetParser - keeps its bytes in a plain BufferList, not the stock parser\'s Duplex stream, after an error too', () => {
    const stock = mqttPacket.parser({ protocolVersion: 4 }) as unknown as { _list: object };
    assert.equal(typeof (stock._list as { pipe?: unknown }).pipe, 'function', 'positive control: the stock parser builds a stream');
    const lean = createPacketParser(4) as unknown as Parser & { _list: object };
    assert.equal(typeof (lean._list as { pipe?: unknown }).pipe, 'undefined');
    run(lean, [Buffer.from([0x00, 0x00])]);
    lean.parse(mqttPacket.generate({ cmd: 'pingreq' })); // an error resets the state on the next parse
    assert.equal(typeof (lean._list as { pipe?: unknown }).pipe, 'undefined');
  });
});
