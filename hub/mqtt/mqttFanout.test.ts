import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Bus, BusHandler, BusMessage } from '../bus/bus.ts';
import { MqttFanout, type Subscriber } from './mqttFanout.ts';

/** Only what MqttFanout calls on the bus: one org handler, captured so the test can feed it. */
function orgBus(): { bus: Bus; emit(m: BusMessage): void } {
  let h: BusHandler | undefined;
  const bus = { subscribeOrg: (_org: string, handler: BusHandler) => ((h = handler), () => (h = undefined)) } as unknown as Bus;
  return { bus, emit: (m) => h?.(m) };
}

/** A subscriber that records the QoS of each delivery. */
function recorder(subs: Map<string, 0 | 1>): Subscriber & { got: number[] } {
  const got: number[] = [];
  return { version: 5, maxOut: Infinity, subs, got, sendShared: () => void got.push(0), sendQos1: () => void got.push(1) };
}

const msg = (topic: string, qos: 0 | 1 = 1, expiresAt?: number): BusMessage => ({ org: 'o', topic, payload: Buffer.from('x'), contentType: 'bytes', ts: Date.now(), qos, expiresAt });

describe('mqtt overlapping subscriptions', () => {
  it('overlap - overlapping filters deliver once, at the highest granted QoS', () => {
    const { bus, emit } = orgBus();
    const f = new MqttFanout(bus);
    const subs = new Map<string, 0 | 1>([['a/#', 0], ['a/+/c', 1], ['x/y', 1]]);
    const s = recorder(subs);
    for (const [p, q] of subs) f.add('o', p, s, q);
    emit(msg('a/b/c'));
    assert.deepEqual(s.got, [1]);
  });

  it('overlap - a topic only one filter matches is delivered at that filter\'s QoS', () => {
    const { bus, emit } = orgBus();
    const f = new MqttFanout(bus);
    const subs = new Map<string, 0 | 1>([['a/#', 0], ['x/y', 1]]);
    const s = recorder(subs);
    for (const [p, q] of subs) f.add('o', p, s, q);
    emit(msg('a/b'));
    emit(msg('x/y'));
    emit(msg('nope'));
    assert.deepEqual(s.got, [0, 1]);
  });

  it('overlap - two sessions on one filter each get the message, and an expired message reaches nobody', () => {
    const { bus, emit } = orgBus();
    const f = new MqttFanout(bus);
    const a = recorder(new Map([['t/#', 1]]));
    const b = recorder(new Map([['t/#', 1]]));
    f.add('o', 't/#', a, 1);
    f.add('o', 't/#', b, 1);
    emit(msg('t/1'));
    emit(msg('t/2', 1, Date.now() - 1000));
    assert.deepEqual([a.got, b.got], [[1], [1]]);
    assert.equal(f.stats.expired, 1);
  });
});
