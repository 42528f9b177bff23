import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { NatsConnection } from '@nats-io/transport-node';
import { createNatsBus } from '../bus/natsBus.ts';
import { withSignedControl } from '../bus/signedControl.ts';
import { createLogger } from '../log.ts';
import { connectNats, NATS_URL } from '../testing/natsClient.ts';
import { until } from './mqttTestKit.ts';
import { clientKey, createTakeoverRegistry, TAKEOVER_CONTROL, type Registrant, type TakeoverRegistry } from './takeoverRegistry.ts';

const SECRET = 'takeover-registry-test-secret-0123456789';
/** The signed frame: 8-byte timestamp and 32-byte HMAC before the JSON payload (hub/bus/signedControl.ts). */
const FRAME_HEAD = 40;

/** Two registries (two "nodes") on the machine's NATS, with signed control messages as the hub has them. */
describe('mqtt takeover registry over NATS', () => {
  const log = createLogger('silent');
  const buses: ReturnType<typeof createNatsBus>[] = [];
  const registries: TakeoverRegistry[] = [];
  let nc: NatsConnection;
  /** Takeover notices on the wire, as parsed JSON, keyed by the sending node. */
  const wire = new Map<string, unknown[]>();

  const node = async (nodeId: string) => {
    const raw = createNatsBus({ servers: NATS_URL, name: `takeover test ${nodeId}`, log });
    await raw.ready;
    buses.push(raw);
    const r = createTakeoverRegistry({ bus: withSignedControl(raw, SECRET, log), nodeId, log });
    registries.push(r);
    // The registry's control subscription is on the server before anything is announced to it.
    await raw.flush();
    return r;
  };
  const registrant = () => {
    const r = { session: randomUUID(), taken: 0, takenOver: () => void r.taken++ };
    return r as Registrant & { taken: number };
  };

  const nextMs = async () => {
    const t = Date.now();
    while (Date.now() <= t) await new Promise((r) => setTimeout(r, 1));
  };

  before(async () => {
    nc = await connectNats();
    nc.subscribe(`orghub.ctl.${TAKEOVER_CONTROL}`, {
      callback: (_err, msg) => {
        try {
          const m = JSON.parse(Buffer.from(msg.data.subarray(FRAME_HEAD)).toString('utf8')) as { node?: string } | { node?: string }[];
          // Other hubs on this NATS announce too: only this test's nodes are counted.
          const from = Array.isArray(m) ? m[0]?.node : m.node;
          if (from) wire.set(from, [...(wire.get(from) ?? []), m]);
        } catch {
          // not JSON: someone else's message
        }
      },
    });
    await nc.flush();
  });

  after(async () => {
    for (const r of registries) r.close();
    for (const b of buses) await b.close();
    await nc?.close();
  });

  it('takeover registry - a burst of registrations in one turn takes over every older one on the other node, announced in one message', async () => {
    const a = `a-${randomUUID()}`;
    const b = `b-${randomUUID()}`;
    const [ra, rb] = [await node(a), await node(b)];
    const keys = Array.from({ length: 50 }, (_, i) => clientKey('org-takeover-test', 'dev', `c-${i}-${randomUUID()}`));
    // Given 50 sessions held on node b
    const old = keys.map((k) => {
      const r = registrant();
      rb.register(k, r);
      return r;
    });
    // When the same 50 client ids register on node a within one turn, later (ties go by session id)
    await nextMs();
    const fresh = keys.map((k) => {
      const r = registrant();
      ra.register(k, r);
      return r;
    });
    // Then node b closes all 50 (the takeover holds across nodes), node a's stay
    assert.ok(await until(() => old.every((r) => r.taken === 1)), `taken over on node b: ${old.filter((r) => r.taken === 1).length}/50`);
    assert.ok(fresh.every((r) => r.taken === 0), 'the newer registrations survive');
    assert.ok(await until(() => (wire.get(a)?.length ?? 0) >= 1));
    // and node a sent one signed message carrying the 50 notices, not 50 messages
    await nc.flush();
    const sent = wire.get(a)!;
    assert.equal(sent.length, 1, 'one control message for the burst');
    assert.ok(Array.isArray(sent[0]) && sent[0].length === 50, 'carrying every notice of the turn');
  });

  it('takeover registry - a lone registration is announced as a single notice (the form nodes of the previous version read)', async () => {
    const a = `a-${randomUUID()}`;
    const b = `b-${randomUUID()}`;
    const [ra, rb] = [await node(a), await node(b)];
    const k = clientKey('org-takeover-test', 'dev', `lone-${randomUUID()}`);
    const older = registrant();
    rb.register(k, older);
    await nextMs();
    ra.register(k, registrant());
    assert.ok(await until(() => older.taken === 1), 'the older session on the other node is closed');
    assert.ok(await until(() => (wire.get(a)?.length ?? 0) >= 1));
    const m = wire.get(a)![0] as { k?: string; node?: string };
    assert.ok(!Array.isArray(m), 'an object, not an array');
    assert.equal(m.k, k);
    assert.equal(m.node, a);
  });
});
