import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { testOrg } from '../testing/hubProcess.ts';
import { connect, sleep, startMqttHub, type MqttHub } from './mqttTestKit.ts';

const MUTANTS = Number(process.env.MQTT_FUZZ_MUTANTS ?? 3000);

/** Deterministic PRNG (mulberry32), so a failing seed can be replayed with MQTT_FUZZ_SEED. */
function rng(seed: number): () => number {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function mutate(b: Buffer, r: () => number): Buffer {
  const out = Buffer.from(b);
  const kind = Math.floor(r() * 5);
  const n = 1 + Math.floor(r() * 4);
  switch (kind) {
    case 0: // flip random bytes
      for (let i = 0; i < n; i++) out[Math.floor(r() * out.length)] = Math.floor(r() * 256);
      return out;
    case 1: // truncate
      return out.subarray(0, Math.floor(r() * out.length));
    case 2: // insert random bytes
    {
      const at = Math.floor(r() * out.length);
      const ins = Buffer.from(Array.from({ length: n }, () => Math.floor(r() * 256)));
      return Buffer.concat([out.subarray(0, at), ins, out.subarray(at)]);
    }
    case 3: // corrupt the fixed header (type, flags, remaining length)
      out[Math.floor(r() * Math.min(5, out.length))] = Math.floor(r() * 256);
      return out;
    default: // flip single bits
      for (let i = 0; i < n; i++) out[Math.floor(r() * out.length)] ^= 1 << Math.floor(r() * 8);
      return out;
  }
}

/**
 * Mutation fuzzing over raw TCP: valid CONNECT (clean and persistent sessions), SUBSCRIBE,
 * PUBLISH, PUBACK, PUBREL and DISCONNECT packets from mqtt-packet, randomly mutated, thrown at
 * the hub while a control pair keeps exchanging QoS 1 messages.
 */
describe('mqtt fuzz', () => {
  let issuer: TestIssuer;
  let h: MqttHub;
  before(async () => {
    issuer = await createTestIssuer();
    h = await startMqttHub(issuer);
  });
  after(async () => {
    await h?.hub.stop();
  });

  it(`mutated packets - ${MUTANTS} mutants; the hub stays up and other clients get every message`, async () => {
    const seed = Number(process.env.MQTT_FUZZ_SEED ?? Date.now() % 1e9);
    const r = rng(seed);
    const org = testOrg();
    const token = await issuer.token(org, 'fuzz');
    const control = await connect(h.tcpUrl, await issuer.token(org, 'ctl-sub'), { protocolVersion: 5 });
    await control.client.subscribeAsync('ctl/#', { qos: 1 });
    const pub = await connect(h.tcpUrl, await issuer.token(org, 'ctl-pub'));

    // Clean and persistent sessions (a persistent one is parked in Redis and resumed by the next mutant).
    const templates: { version: 4 | 5; connect: Buffer; rest: Buffer[] }[] = ([4, 5, 4, 5] as const).map((version, i) => {
      const gen = (p: Packet) => mqttPacket.generate(p, { protocolVersion: version });
      const persistent = i >= 2 ? { clean: false, clientId: 'fz-persistent', ...(version === 5 ? { properties: { sessionExpiryInterval: 30, receiveMaximum: 10 } } : {}) } : {};
      return {
        version,
        connect: gen({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clientId: 'fz', clean: true, keepalive: 30, username: 'u', password: Buffer.from(token), will: { topic: 'ctl/will', payload: Buffer.from('w'), qos: 1, retain: false }, ...(version === 5 ? { properties: { receiveMaximum: 10, maximumPacketSize: 100000 } } : {}), ...persistent } as Packet),
        rest: [
          gen({ cmd: 'subscribe', messageId: 7, subscriptions: [{ topic: 'a/+/b', qos: 1 }, { topic: '#', qos: 0 }] }),
          gen({ cmd: 'publish', topic: 'fz/x', payload: Buffer.from('{"a":1}'), qos: 1, messageId: 3, retain: false, dup: false }),
          gen({ cmd: 'publish', topic: 'fz/r', payload: Buffer.from([1, 2, 3]), qos: 2, messageId: 4, retain: true, dup: false }),
          gen({ cmd: 'unsubscribe', messageId: 9, unsubscriptions: ['a/+/b'] }),
          gen({ cmd: 'pingreq' }),
          gen({ cmd: 'puback', messageId: 1 }),
          gen({ cmd: 'pubrel', messageId: 4 }),
          gen({ cmd: 'disconnect', ...(version === 5 ? { reasonCode: 0x04 } : {}) }),
        ],
      };
    });

    const fire = (bytes: Buffer) =>
      new Promise<void>((resolve) => {
        const s = net.connect(h.mqttPort, '127.0.0.1');
        const done = () => (s.destroy(), resolve());
        s.on('error', done);
        s.on('close', done);
        s.on('connect', () => s.write(bytes));
        setTimeout(done, 60);
      });

    let sent = 0;
    let stop = false;
    const ticker = (async () => {
      while (!stop) {
        await pub.client.publishAsync('ctl/tick', String(sent++), { qos: 1 });
        await sleep(5);
      }
    })();

    const CONC = 40;
    for (let i = 0; i < MUTANTS; i += CONC) {
      const batch: Promise<void>[] = [];
      for (let j = 0; j < CONC && i + j < MUTANTS; j++) {
        const t = templates[Math.floor(r() * templates.length)];
        const target = Math.floor(r() * (t.rest.length + 1));
        // Either the CONNECT itself is mutated, or a valid CONNECT is followed by a mutated packet.
        const bytes = target === t.rest.length ? mutate(t.connect, r) : Buffer.concat([t.connect, ...t.rest.slice(0, target), mutate(t.rest[target], r)]);
        batch.push(fire(bytes));
      }
      await Promise.all(batch);
    }
    stop = true;
    await ticker;
    const health = await fetch(`${h.hub.url}/health`);
    assert.equal(health.status, 200, `hub down (seed ${seed})`);
    const ticks = await control.waitFor(sent, (m) => m.topic === 'ctl/tick', 10000);
    assert.deepEqual(ticks.map((m) => Number(m.payload.toString())), Array.from({ length: sent }, (_, i) => i), `control traffic lost or reordered (seed ${seed})`);
    assert.ok(sent > 10, 'the control pair kept publishing');
    // A fresh client still connects and works after the storm.
    const fresh = await connect(h.tcpUrl, await issuer.token(org, 'fresh'));
    await fresh.client.subscribeAsync('ctl/fresh');
    await pub.client.publishAsync('ctl/fresh', 'ok', { qos: 1 });
    await fresh.waitFor(1);
    assert.doesNotMatch(h.hub.output(), /uncaught|unhandled|FATAL/i, h.hub.output().slice(-2000));
    control.client.end(true);
    pub.client.end(true);
    fresh.client.end(true);
  });
});
