// test-run: serial (timing assertions; scripts/test.mjs runs these one at a time after the rest)
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { freePort, startHubProcess, testOrg, type HubProcess } from '../testing/hubProcess.ts';
import { TestClient, sleep, type Frame } from '../testing/wsClient.ts';
import { RawClient } from '../mqtt/mqttTestKit.ts';
import { percentiles } from '../../loadtest/lib/stats.ts';
import { BACKOFF_BASE_MS, BACKOFF_CAP_MS } from './backoff.ts';

/**
 * Holds (issue 9, docs/protocol.md "Rate limits"): a connection that keeps being refused is told
 * to wait longer each time, and the hub runs none of its frames meanwhile, so a client that
 * ignores `retryAfterMs` costs one refusal per hold instead of one per frame. A real hub process,
 * real tokens, real WebSocket and MQTT 5 clients; each flood runs FLOOD_S seconds against a
 * connection bucket of RATE/s while another org, and a client of the same org within its rate,
 * publish beside it.
 */
const RATE = 50; // publishes per second per connection, burst 1 s
const FLOOD_S = 3;
const INFLIGHT = 50;
const floodOrg = testOrg('hold');
const otherOrg = testOrg('hold-other');

/** Sends `n` publishes at `perSecond` on `c` (each waits for its answer) and returns their latencies. */
async function paced(c: TestClient, n: number, perSecond: number, topic: string): Promise<{ lat: number[]; answers: Frame[] }> {
  const lat: number[] = [];
  const answers: Frame[] = [];
  const pending: Promise<void>[] = [];
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const due = t0 + (i * 1000) / perSecond;
    if (due > performance.now()) await sleep(due - performance.now());
    const t = performance.now();
    pending.push(c.request({ op: 'pub', topic, data: i }, 10_000).then((f) => void (answers.push(f), lat.push(performance.now() - t))));
  }
  await Promise.all(pending);
  return { lat, answers };
}

describe('rate-limit holds', () => {
  let issuer: TestIssuer;
  let hub: HubProcess;
  let mqttPort: number;
  const metric = async (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(await (await fetch(`${hub.url}/metrics`)).text())?.[1] ?? NaN);

  before(async () => {
    issuer = await createTestIssuer();
    mqttPort = await freePort();
    hub = await startHubProcess(
      {
        ...issuer.env,
        ORGHUB_EVENT_STORE: 'none',
        ORGHUB_MQTT_PORT: String(mqttPort),
        ORGHUB_LIMITS_PREFIX: `orghub-test-${randomUUID().slice(0, 8)}:`,
        ORGHUB_LIMITS_ORGS: JSON.stringify({ [floodOrg]: { publish: { connection: RATE }, burstSeconds: 1 } }),
        // high enough that these floods are held, not closed (the close is tested in limits.int.test.ts)
        ORGHUB_LIMITS_ABUSE: '100000',
      },
      { timeoutMs: 60_000 },
    );
  });
  after(async () => {
    await hub?.stop();
  });

  it('holds - a WebSocket client that ignores retryAfterMs gets growing retry times and few refusals; another org and a compliant client are not slowed', async () => {
    const ctl = await TestClient.connect(hub.wsUrl, await issuer.token(otherOrg, 'ctl'));
    const polite = await TestClient.connect(hub.wsUrl, await issuer.token(floodOrg, 'polite'));
    // positive control first: the same clients alone
    const ctlAlone = await paced(ctl, 100, 50, 'x/y');
    const flooder = await TestClient.connect(hub.wsUrl, await issuer.token(floodOrg, 'flood'));
    const holds0 = await metric('orghub_ws_rate_holds_total');
    let sent = 0;
    let accepted = 0;
    const retries: number[] = [];
    const start = performance.now();
    let running = true;
    // INFLIGHT publishes outstanding; every answer, refusal or not, is followed by the next one at once
    flooder.ws.on('message', (data: Buffer) => {
      const v = JSON.parse(data.toString());
      for (const f of Array.isArray(v) ? v : [v]) {
        if (f.op === 'ok') accepted++;
        else if (f.op === 'err') {
          assert.equal(f.code, 'rate_limited', JSON.stringify(f));
          retries.push(f.retryAfterMs);
        }
        if (running) (sent++, flooder.send({ op: 'pub', id: 1_000_000 + sent, topic: 'f/x', data: sent }));
      }
    });
    for (let i = 0; i < INFLIGHT; i++) (sent++, flooder.send({ op: 'pub', id: 1_000_000 + sent, topic: 'f/x', data: sent }));
    const [ctlFlood, politeFlood] = await Promise.all([paced(ctl, 100, 50, 'x/y'), paced(polite, 100, 40, 'f/y')]);
    while (performance.now() - start < FLOOD_S * 1000) await sleep(50);
    running = false;
    const elapsed = (performance.now() - start) / 1000;
    const holds = (await metric('orghub_ws_rate_holds_total')) - holds0;
    console.log(`# ws flood: sent ${sent}, accepted ${accepted}, refused ${retries.length} in ${elapsed.toFixed(1)} s, holds ${holds}; retryAfterMs ${retries.slice(0, 12).join(',')}…; control p99 alone ${percentiles(ctlAlone.lat, [99])[0].toFixed(1)} ms, beside the flood ${percentiles(ctlFlood.lat, [99])[0].toFixed(1)} ms; same-org compliant client p99 ${percentiles(politeFlood.lat, [99])[0].toFixed(1)} ms`);

    // growing retry times: the first is the bucket's own wait (up to 1000/RATE ms, at least the
    // base), then the base doubles per refusal (above the bucket's wait) until the cap, where they stay
    assert.ok(retries[0] >= BACKOFF_BASE_MS && retries[0] <= 1000 / RATE, `first retry ${retries[0]}`);
    const expectedRetries = retries.map((_, i) => (i === 0 ? retries[0] : Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** i)));
    assert.deepEqual(retries, expectedRetries);
    assert.ok(retries.includes(BACKOFF_CAP_MS), `the cap is reached: ${retries.join(',')}`);
    // one refusal per hold: over FLOOD_S s at most 10+20+40+80+160 ms then one per 200 ms (+ slack),
    // where answering every frame refused about `sent - accepted` of them
    const bound = 5 + Math.ceil((elapsed * 1000) / BACKOFF_CAP_MS) + 5;
    assert.ok(retries.length <= bound, `${retries.length} refusals in ${elapsed.toFixed(1)} s (bound ${bound})`);
    assert.ok(holds >= retries.length - 1 && holds <= retries.length + 1, `${holds} holds for ${retries.length} refusals`);
    // the flooder still gets its rate (it is held, not starved): burst + rate x time, within 30 %
    const expected = RATE + RATE * elapsed;
    assert.ok(accepted >= expected * 0.7 && accepted <= expected * 1.1, `accepted ${accepted}, expected about ${expected.toFixed(0)}`);
    // positive control: another org, and a compliant client of the same org, are not refused or slowed
    for (const r of [...ctlFlood.answers, ...politeFlood.answers]) assert.equal(r.op, 'ok', JSON.stringify(r));
    const bound2 = Math.max(50, 3 * percentiles(ctlAlone.lat, [99])[0]);
    assert.ok(percentiles(ctlFlood.lat, [99])[0] <= bound2, `other org p99 ${percentiles(ctlFlood.lat, [99])[0].toFixed(1)} ms beside the flood (bound ${bound2.toFixed(1)})`);
    assert.ok(percentiles(politeFlood.lat, [99])[0] <= bound2, `compliant client p99 ${percentiles(politeFlood.lat, [99])[0].toFixed(1)} ms (bound ${bound2.toFixed(1)})`);
    assert.equal(flooder.closeCode, undefined, 'held, not closed (ORGHUB_LIMITS_ABUSE is high here)');
    await Promise.all([flooder.close(), ctl.close(), polite.close()]);
  });

  it('holds - an MQTT 5 client that keeps publishing over its rate is held by TCP: few PUBACK 0x97, its rate still served', async () => {
    const connect = async (org: string, sub: string) => {
      const raw = await RawClient.open(mqttPort, 5);
      raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: `${sub}-${randomUUID().slice(0, 6)}`, keepalive: 60, username: 'x', password: Buffer.from(await issuer.token(org, sub)) } as never, 5);
      const ack = (await raw.waitFor((p) => p.cmd === 'connack')) as { reasonCode?: number };
      assert.equal(ack.reasonCode ?? 0, 0);
      return raw;
    };
    const flood = await connect(floodOrg, 'mflood');
    const holds0 = await metric('orghub_mqtt_rate_holds_total');
    const codes: number[] = [];
    let sent = 0;
    let running = true;
    const publish = () => {
      sent++;
      flood.send({ cmd: 'publish', topic: 'm/x', payload: Buffer.from('1'), qos: 1, messageId: (sent % 60000) + 1, retain: false, dup: false } as never, 5);
    };
    const parser = mqttPacket.parser({ protocolVersion: 5 });
    parser.on('packet', (p: Packet) => {
      if (p.cmd !== 'puback') return;
      codes.push((p as { reasonCode?: number }).reasonCode ?? 0);
      if (running) publish();
    });
    flood.socket.on('data', (d) => parser.parse(d));
    const start = performance.now();
    for (let i = 0; i < INFLIGHT; i++) publish();
    // the control: another org's MQTT client publishes QoS 1 meanwhile and is never refused
    const ctl = await connect(otherOrg, 'mctl');
    for (let i = 0; i < 50; i++) {
      ctl.send({ cmd: 'publish', topic: 'c/x', payload: Buffer.from('1'), qos: 1, messageId: i + 1, retain: false, dup: false } as never, 5);
      await sleep(20);
    }
    while (performance.now() - start < FLOOD_S * 1000) await sleep(50);
    running = false;
    const elapsed = (performance.now() - start) / 1000;
    const deadline = Date.now() + 10_000;
    while (ctl.packets.filter((p) => p.cmd === 'puback').length < 50 && Date.now() < deadline) await sleep(20);
    const holds = (await metric('orghub_mqtt_rate_holds_total')) - holds0;
    const refused = codes.filter((c) => c === 0x97).length;
    const accepted = codes.filter((c) => c === 0).length;
    console.log(`# mqtt flood: sent ${sent}, accepted ${accepted}, refused ${refused} in ${elapsed.toFixed(1)} s, holds ${holds}`);
    assert.deepEqual(new Set(codes.filter((c) => c !== 0)), new Set([0x97]));
    const bound = 5 + Math.ceil((elapsed * 1000) / BACKOFF_CAP_MS) + 5;
    assert.ok(refused >= 1 && refused <= bound, `${refused} PUBACK 0x97 in ${elapsed.toFixed(1)} s (bound ${bound})`);
    assert.ok(holds >= 1 && holds <= refused, `${holds} holds for ${refused} refusals`);
    const expected = RATE + RATE * elapsed;
    assert.ok(accepted >= expected * 0.7 && accepted <= expected * 1.1, `accepted ${accepted}, expected about ${expected.toFixed(0)}`);
    assert.deepEqual(new Set(ctl.packets.filter((p) => p.cmd === 'puback').map((p) => (p as { reasonCode?: number }).reasonCode ?? 0)), new Set([0]), 'the other org is never refused');
    assert.equal(ctl.packets.filter((p) => p.cmd === 'puback').length, 50);
    flood.socket.destroy();
    ctl.socket.destroy();
  });
});
