// test-run: serial
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { loadConfig } from '../config/config.ts';
import { createLogger } from '../log.ts';
import { startHub, type HubExtension, type RunningHub } from '../server.ts';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { freePort, testOrg } from '../testing/hubProcess.ts';
import { createMqttBridge } from './mqttBridge.ts';
import { connect, startMqttHub, until, type Collector, type MqttHub } from './mqttTestKit.ts';
import { aliveKey, sessionKey } from './sessionStoreRedis.ts';
import { NODE_ALIVE_MS } from './sessionStore.ts';
import { clientKey } from './takeoverRegistry.ts';

/** The MQTT bridge without its drain: `stop` alone closes the connections (a stop that skips the drain). */
function bridgeWithoutDrain(): HubExtension {
  const bridge = createMqttBridge();
  return {
    name: bridge.name,
    async start(core) {
      const { drain: _skipped, ...rest } = await bridge.start(core);
      return rest;
    },
  };
}

/**
 * A node whose MQTT bridge stops without a drain parks its persistent sessions on the way down
 * (docs/mqtt.md "When the node holding the offline queue stops"). Those parks must not mark the
 * node alive again, or another node adopts the sessions only once that mark lapses (NODE_ALIVE_MS
 * later). Node A runs in this process (so that its drain can be left out), node B is a child hub;
 * both share NATS and Redis.
 */
describe('mqtt stop without a drain', () => {
  let issuer: TestIssuer;
  let a: RunningHub | undefined;
  let b: MqttHub;
  let redis: Redis;
  let aPort: number;
  const open: Collector[] = [];

  before(async () => {
    issuer = await createTestIssuer();
    redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
    aPort = await freePort();
    const config = loadConfig({ ...process.env, ...issuer.env, ORGHUB_PORT: '0', ORGHUB_HOST: '127.0.0.1', ORGHUB_MQTT_PORT: String(aPort), ORGHUB_MQTT_RATE: '100000', ORGHUB_EVENT_STORE: 'none', ORGHUB_LOG_LEVEL: 'silent' });
    [a, b] = await Promise.all([startHub(config, createLogger('silent'), { extensions: [bridgeWithoutDrain()] }), startMqttHub(issuer)]);
    const ready = await until(async () => (await fetch(`http://127.0.0.1:${a!.port}/ready`)).status === 200, 30_000);
    assert.ok(ready, 'node A became ready');
  });
  after(async () => {
    for (const c of open) c.client.end(true);
    await a?.stop();
    await b?.hub.stop();
    redis?.disconnect();
  });

  it('should let another node adopt the sessions parked by a stop without a drain within a beat, not after the node\'s alive mark lapses again', async (t) => {
    // Given persistent sessions connected to node A
    const org = testOrg();
    const n = 10;
    const refs: string[] = [];
    for (let i = 0; i < n; i++) {
      const c = await connect(`mqtt://127.0.0.1:${aPort}`, await issuer.token(org, `dev-${i}`), { clientId: `c-${i}`, clean: false });
      open.push(c);
      await c.client.subscribeAsync(`d/${i}/#`, { qos: 1 });
      refs.push(sessionKey({ org, key: clientKey(org, `dev-${i}`, `c-${i}`) }));
    }
    const nodeA = a!.core.nodeId;
    const ownerOf = async () => Promise.all(refs.map((k) => redis.hget(k, 'owner')));
    // (control: they are live on A before the stop)
    assert.ok((await ownerOf()).every((o) => o?.startsWith(`live:${nodeA}:`)), 'connected to node A');

    // When A stops without a drain (its bridge parks them on the way down)
    const t0 = Date.now();
    const stopping = a!.stop();
    a = undefined;
    await stopping;
    const parkedOnA = (await ownerOf()).filter((o) => o?.startsWith(`queue:${nodeA}:`)).length;
    assert.equal(parkedOnA + (await ownerOf()).filter((o) => o?.startsWith('queue:') && !o.startsWith(`queue:${nodeA}:`)).length, n, 'every session parked');
    assert.equal(await redis.exists(aliveKey(nodeA)), 0, 'the stopped node is not marked alive by its parks');

    // Then node B adopts every one of them well before the alive mark (NODE_ALIVE_MS) would have lapsed
    const adopted = await until(async () => (await ownerOf()).every((o) => !!o && o.startsWith('queue:') && !o.startsWith(`queue:${nodeA}:`)), 20_000);
    const ms = Date.now() - t0;
    assert.ok(adopted, 'node B adopted the parked sessions');
    t.diagnostic(`adopted ${ms} ms after the stop`);
    assert.ok(ms < NODE_ALIVE_MS - 1000, `adopted ${ms} ms after the stop (at most one beat of node B, not NODE_ALIVE_MS = ${NODE_ALIVE_MS} ms)`);
  });
});
