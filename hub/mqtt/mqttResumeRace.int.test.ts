import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { IConnackPacket } from 'mqtt-packet';
import { loadConfig } from '../config/config.ts';
import { createLogger } from '../log.ts';
import { startHub, type RunningHub } from '../server.ts';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { freePort, testOrg } from '../testing/hubProcess.ts';
import type { ResumePhase } from './bridgeContext.ts';
import { createMqttBridge } from './mqttBridge.ts';
import { connect, RawClient, until, waitListed, type Collector } from './mqttTestKit.ts';

/**
 * A persistent session whose connection goes away in the middle of its resume (docs/mqtt.md
 * "Sessions"): the claimed queue and what is published afterwards must reach the next connection.
 * The hub runs in this process so that a test seam (`BridgeHooks.resume`) can close the socket at
 * an exact point of the resume, with real NATS and Redis and real MQTT clients on both sides.
 */
describe('mqtt resume race', () => {
  let issuer: TestIssuer;
  let hub: RunningHub;
  let mqttPort: number;
  const open: Collector[] = [];
  const raws: RawClient[] = [];
  /**
   * The resume a test wants interrupted: the socket to destroy once `sub`'s session reaches `phase`,
   * and what to do once the hub has seen the close, before the resume goes on.
   */
  let armed: { sub: string; phase: ResumePhase; raw?: RawClient; during?: (c: { pending(): unknown[] }) => Promise<void>; fired?: () => void } | undefined;

  before(async () => {
    issuer = await createTestIssuer();
    mqttPort = await freePort();
    const config = loadConfig({
      ...process.env,
      ...issuer.env,
      ORGHUB_PORT: '0',
      ORGHUB_HOST: '127.0.0.1',
      ORGHUB_MQTT_PORT: String(mqttPort),
      ORGHUB_MQTT_RATE: '100000',
      ORGHUB_EVENT_STORE: 'none',
      ORGHUB_LOG_LEVEL: 'silent',
    });
    const hooks = {
      async resume(phase: ResumePhase, c: { readonly closed: boolean; readonly principal: { sub: string }; pending(): unknown[] }) {
        const a = armed;
        if (!a || a.phase !== phase || a.sub !== c.principal.sub || !a.raw) return;
        armed = undefined;
        a.raw.socket.destroy();
        // The hub must have seen the close before the resume goes on: that is the race under test.
        assert.ok(await until(() => c.closed, 5000), 'the hub saw the socket close');
        await a.during?.(c);
        a.fired?.();
      },
    };
    hub = await startHub(config, createLogger('silent'), { extensions: [createMqttBridge({ hooks })] });
    // Ready once Redis (the session store) and NATS answer, as startHubProcess waits for a child hub.
    const ready = await until(async () => (await fetch(`http://127.0.0.1:${hub.port}/ready`)).status === 200, 30_000);
    assert.ok(ready, 'the hub became ready');
  });
  after(async () => {
    for (const c of open) c.client.end(true);
    for (const r of raws) r.socket.destroy();
    await hub?.stop();
  });

  const url = () => `mqtt://127.0.0.1:${mqttPort}`;
  const client = async (org: string, sub: string, opts: Parameters<typeof connect>[2] = {}) => {
    const c = await connect(url(), await issuer.token(org, sub), opts);
    open.push(c);
    return c;
  };
  /** Waits until the org lists `clientId` in the wanted state. */
  const listed = async (org: string, clientId: string, want: { connected: boolean; queued?: number }) => {
    await waitListed(`http://127.0.0.1:${hub.port}`, await issuer.token(org, 'inspector', ['admin']), clientId, want);
  };

  /** A parked persistent session of `dev` with two queued QoS 1 messages; returns the publisher. */
  const parkedWithTwo = async (org: string, clientId: string) => {
    const a = await client(org, 'dev', { clientId, clean: false });
    await a.client.subscribeAsync('q/#', { qos: 1 });
    await a.client.endAsync();
    await listed(org, clientId, { connected: false });
    const pub = await client(org, 'pub');
    for (const n of [1, 2]) await pub.client.publishAsync(`q/${n}`, `m${n}`, { qos: 1 });
    await listed(org, clientId, { connected: false, queued: 2 });
    return pub;
  };
  /** Reconnects `dev` with a raw client whose socket `armed` closes during the resume; resolves once it did. */
  const interruptedReconnect = async (org: string, clientId: string, arm: Omit<NonNullable<typeof armed>, 'raw' | 'fired' | 'sub'>) => {
    const fired = new Promise<void>((resolve) => (armed = { ...arm, sub: 'dev', fired: resolve }));
    const raw = await RawClient.open(mqttPort, 4);
    raws.push(raw);
    armed!.raw = raw;
    raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, clean: false, keepalive: 60, username: 'x', password: Buffer.from(await issuer.token(org, 'dev')) } as never);
    await fired;
    assert.equal(raw.packets.find((p) => p.cmd === 'connack') as IConnackPacket | undefined, undefined, 'closed before its CONNACK');
  };

  /**
   * The session is parked with `k` queued messages, and its offline queue takes m<k+1>; a reconnect
   * gets m1 to m<k+1>, once each, in order.
   */
  const parkedThenDelivered = async (org: string, clientId: string, pub: Awaited<ReturnType<typeof client>>, k: number) => {
    await listed(org, clientId, { connected: false, queued: k });
    await pub.client.publishAsync(`q/${k + 1}`, `m${k + 1}`, { qos: 1 });
    await listed(org, clientId, { connected: false, queued: k + 1 });
    const back = await client(org, 'dev', { clientId, clean: false });
    assert.equal(back.connack.sessionPresent, true);
    const got = await back.waitFor(k + 1);
    assert.deepEqual(
      got.map((m) => [m.topic, m.payload.toString()]),
      Array.from({ length: k + 1 }, (_, i) => [`q/${i + 1}`, `m${i + 1}`]),
    );
  };

  for (const phase of ['claimed', 'claiming'] as const) {
    const when = phase === 'claimed' ? 'after its claim, before the claimed queue is delivered' : 'while its claim runs';
    it(`should keep every queued message when the socket closes ${when} (${phase})`, async () => {
      // Given a parked persistent session with two queued QoS 1 messages
      const org = testOrg();
      const clientId = `dev-${phase}`;
      const pub = await parkedWithTwo(org, clientId);

      // When a reconnect's socket closes at `phase` of its resume
      await interruptedReconnect(org, clientId, { phase });

      // Then the session is parked again with its queue, its offline queue takes m3, and a
      // reconnect gets all three, in order
      await parkedThenDelivered(org, clientId, pub, 2);
    });
  }

  it('should keep a message published after the claim stopped the offline queue and before the closed connection parked the session (answered)', async () => {
    // Given a parked persistent session with two queued QoS 1 messages
    const org = testOrg();
    const clientId = 'dev-answered';
    const pub = await parkedWithTwo(org, clientId);

    // When a reconnect's socket closes while its claim runs, and m3 is published before the claim's
    // answer is acted on: the claim has moved the session off the offline queue, which can no
    // longer append m3; only the closing connection's subscriptions hold it
    await interruptedReconnect(org, clientId, {
      phase: 'answered',
      during: async (c) => {
        await pub.client.publishAsync('q/3', 'm3', { qos: 1 });
        assert.ok(await until(() => c.pending().length === 1, 5000), 'the closed connection holds m3');
      },
    });

    // Then the session is parked with m3 behind the claimed queue, its new offline queue takes m4,
    // and a reconnect gets all four, in order
    await parkedThenDelivered(org, clientId, pub, 3);
  });
});
