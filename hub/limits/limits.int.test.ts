// test-run: serial (timing assertions; scripts/test.mjs runs these one at a time after the rest)
import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { freePort, startHubProcess, testOrg } from '../testing/hubProcess.ts';
import { TestClient, sleep } from '../testing/wsClient.ts';
import { RawClient, type MqttHub } from '../mqtt/mqttTestKit.ts';
import { createRedisLimiter } from './redisLimiter.ts';
import { slotKey } from './limiter.ts';
import { createLogger } from '../log.ts';

/**
 * Rate limits and connection caps on two real hub nodes sharing the real Redis (a random key
 * prefix) and NATS. Each flood meets the documented refusal at the configured rate (within 10 %),
 * while another org at the same time is unaffected.
 */
const RATE = 100; // per second, org burst 1 s here: accepted over T seconds ≈ RATE + RATE * T
const PER_IP = 14;
/** HTTP requests are slower to offer (about 100/s from this test on a busy 2-core machine): a lower rate. */
const HTTP_RATE = 10;
const prefix = `orghub-test-${randomUUID().slice(0, 8)}:`;
const wsOrg = testOrg('ws');
const httpOrg = testOrg('http');
const mqttOrg = testOrg('mqtt');
const capOrg = testOrg('cap');
const abuseOrg = testOrg('abuse');
/** The tier's own bursts: `orgBurstSeconds` 0.25 for the org bucket, `burstSeconds` 2 for the connection's. */
const pacedOrg = testOrg('paced');
const deviceOrg = testOrg('device');
const orgs = {
  [wsOrg]: { publish: { org: RATE }, orgBurstSeconds: 1 },
  [httpOrg]: { publish: { user: HTTP_RATE }, burstSeconds: 1 },
  [mqttOrg]: { publish: { org: RATE }, orgBurstSeconds: 1 },
  [capOrg]: { connections: { org: 3 } },
  [abuseOrg]: { publish: { connection: 1 }, burstSeconds: 1 },
  [pacedOrg]: { publish: { org: RATE } },
  // One connection at RATE under an org rate it cannot reach: the connection's bucket binds.
  [deviceOrg]: { publish: { connection: RATE, org: RATE * 20 } },
};

/**
 * Each connection sends `perRound` publishes at once, awaits their answers and 50 ms, until
 * `seconds` after `start`. `elapsed`: seconds from `start` to the last accepted publish (tokens
 * accrue until then; nothing later could use them).
 */
async function flood(conns: TestClient[], start: number, seconds: number, perRound = 10) {
  const accepted = conns.map(() => 0);
  const refusals: Record<string, unknown>[] = [];
  let lastOk = start;
  await Promise.all(
    conns.map(async (c, i) => {
      while (performance.now() - start < seconds * 1000) {
        const replies = await Promise.all(Array.from({ length: perRound }, () => c.request({ op: 'pub', topic: 't/x', data: 1 }, 10_000)));
        for (const r of replies) {
          if (r.op === 'ok') {
            accepted[i]++;
            lastOk = performance.now();
          } else refusals.push(r);
        }
        await sleep(50);
      }
    }),
  );
  return { accepted, total: accepted.reduce((a, b) => a + b, 0), refusals, elapsed: (lastOk - start) / 1000 };
}

/** Within 10 % of `expected`. */
function near(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= expected * 0.1, `${what}: ${actual} accepted, expected ${expected.toFixed(0)} ± 10 %`);
}

describe('limits across two nodes', () => {
  let issuer: TestIssuer;
  let n1: MqttHub;
  let n2: MqttHub;
  const clients: TestClient[] = [];
  const open = async (hub: MqttHub, org: string, sub: string) => {
    const c = await TestClient.connect(hub.hub.wsUrl, await issuer.token(org, sub));
    clients.push(c);
    return c;
  };

  before(async () => {
    issuer = await createTestIssuer();
    const env = { ORGHUB_EVENT_STORE: 'none', ORGHUB_LIMITS_PREFIX: prefix, ORGHUB_LIMITS_ORGS: JSON.stringify(orgs), ORGHUB_LIMITS_PER_IP: String(PER_IP), ORGHUB_LIMITS_ABUSE: '3000' };
    // A generous start deadline: the shared 2-core machine can take 10 s+ to boot a hub under load.
    const start = async () => {
      const mqttPort = await freePort();
      const hub = await startHubProcess({ ...issuer.env, ...env, ORGHUB_MQTT_PORT: String(mqttPort) }, { timeoutMs: 60_000 });
      return { hub, mqttPort, tcpUrl: `mqtt://127.0.0.1:${mqttPort}`, wsUrl: `ws://127.0.0.1:${hub.port}/mqtt` };
    };
    [n1, n2] = await Promise.all([start(), start()]);
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
  });
  after(async () => {
    await Promise.all([n1?.hub.stop(), n2?.hub.stop()]);
  });

  it('limits - a WebSocket flood from four connections on two nodes meets rate_limited at the org rate; another org is unaffected', async () => {
    const flooders = await Promise.all([open(n1, wsOrg, 'a'), open(n1, wsOrg, 'b'), open(n2, wsOrg, 'c'), open(n2, wsOrg, 'd')]);
    const other = testOrg('ctl');
    const watcher = await open(n2, other, 'w');
    assert.equal((await watcher.request({ op: 'sub', topic: 'x/#' })).op, 'ok');
    const otherPub = await open(n1, other, 'p');

    const start = performance.now();
    // Each connection offers ~200/s (well over the org's 100/s together, under the abuse bound).
    const flooded = flood(flooders, start, 3);
    // The control org publishes 100 messages meanwhile; every one must be accepted and delivered.
    const control = (async () => {
      const out = [];
      for (let i = 0; i < 100; i++) {
        out.push(await otherPub.request({ op: 'pub', topic: 'x/y', data: i }, 10_000));
        await sleep(10);
      }
      return out;
    })();
    const { total: accepted, refusals, elapsed } = await flooded;
    const controlReplies = await control;

    near(accepted, RATE + RATE * elapsed, 'WebSocket publishes');
    // refused, but rarely: a refused connection is held for retryAfterMs (its frames wait, unanswered)
    // instead of having each frame refused (holds.int.test.ts)
    assert.ok(refusals.length >= 4, `the flood was refused too (${refusals.length})`);
    for (const r of refusals.slice(0, 50)) {
      assert.equal(r.code, 'rate_limited', JSON.stringify(r));
      assert.ok(Number.isInteger(r.retryAfterMs) && (r.retryAfterMs as number) >= 1 && (r.retryAfterMs as number) <= 1000, JSON.stringify(r));
    }
    assert.deepEqual(new Set(controlReplies.map((r) => r.op)), new Set(['ok']), 'the other org is never limited');
    await watcher.waitFor(() => watcher.messages('x/y').length === 100, 10_000);
    for (const c of flooders) assert.equal(c.closeCode, undefined, 'a flood under the abuse bound stays connected');
  });

  it('limits - an org\'s flood on two nodes gets orgBurstSeconds (0.25 s) of its rate at once; one connection still gets its 2 s burst', async () => {
    const paced = await Promise.all([open(n1, pacedOrg, 'a'), open(n1, pacedOrg, 'b'), open(n2, pacedOrg, 'c'), open(n2, pacedOrg, 'd')]);
    const device = await open(n1, deviceOrg, 'dev');
    const start = performance.now();
    // Four connections of ~200/s each against the org's 100/s; the device offers ~400/s against its
    // connection's 100/s, so it is still over its rate when its 2 s burst is spent.
    const [org, one] = await Promise.all([flood(paced, start, 4), flood([device], start, 4, 20)]);
    near(org.total, RATE * 0.25 + RATE * org.elapsed, 'org flood (org burst 0.25 s)');
    near(one.total, RATE * 2 + RATE * one.elapsed, 'one connection (connection burst 2 s)');
    // Both nodes lease from the org's small bucket: neither is starved of refills.
    const perNode = [org.accepted[0] + org.accepted[1], org.accepted[2] + org.accepted[3]];
    for (const n of perNode) assert.ok(n >= org.total * 0.25, `each node gets a share of the org's rate: ${perNode.join(' / ')}`);
    assert.ok(org.refusals.length >= 4 && one.refusals.length >= 1, `both floods met their limit (${org.refusals.length}, ${one.refusals.length})`);
    for (const r of [...org.refusals, ...one.refusals].slice(0, 50)) assert.equal(r.code, 'rate_limited', JSON.stringify(r));
  });

  it('limits - HTTP publishes from both nodes meet 429 with Retry-After at the user rate; another user is unaffected', async () => {
    const token = await issuer.token(httpOrg, 'svc');
    const otherToken = await issuer.token(httpOrg, 'other-svc');
    const post = (url: string, tok: string) =>
      fetch(`${url}/v1/publish`, { method: 'POST', headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' }, body: JSON.stringify({ topic: 'h/x', data: 1 }) });
    let accepted = 0;
    const refused: Response[] = [];
    const start = performance.now();
    // Tokens accrue until the last accepted request was answered; nothing later could use them.
    let lastOk = start;
    const bodies: { error: { code: string; retryAfterMs: number } }[] = [];
    const seconds = 3;
    const worker = async (url: string) => {
      while (performance.now() - start < seconds * 1000) {
        const rs = await Promise.all(Array.from({ length: 10 }, () => post(url, token)));
        for (const r of rs) {
          if (r.status === 200) {
            accepted++;
            lastOk = performance.now();
            await r.arrayBuffer();
          } else {
            refused.push(r);
            bodies.push((await r.json()) as { error: { code: string; retryAfterMs: number } });
          }
        }
        await sleep(20);
      }
    };
    const control = (async () => {
      const statuses: number[] = [];
      for (let i = 0; i < 30; i++) {
        const r = await post(i % 2 ? n1.hub.url : n2.hub.url, otherToken);
        statuses.push(r.status);
        await r.arrayBuffer();
        await sleep(100);
      }
      return statuses;
    })();
    await Promise.all([worker(n1.hub.url), worker(n2.hub.url), worker(n1.hub.url), worker(n2.hub.url)]);
    const elapsed = (lastOk - start) / 1000;
    assert.ok(refused.length > accepted, `the flood was refused too (${refused.length} refused, ${accepted} accepted)`);
    near(accepted, HTTP_RATE + HTTP_RATE * elapsed, 'HTTP publishes');
    for (const r of refused.slice(0, 20)) {
      assert.equal(r.status, 429);
      const retry = Number(r.headers.get('retry-after'));
      assert.ok(Number.isInteger(retry) && retry >= 1, `Retry-After ${r.headers.get('retry-after')}`);
    }
    for (const body of bodies.slice(0, 20)) {
      assert.equal(body.error.code, 'rate_limited');
      assert.ok(body.error.retryAfterMs >= 1 && body.error.retryAfterMs <= 1000, JSON.stringify(body));
    }
    assert.deepEqual(new Set(await control), new Set([200]), 'another user of the same org keeps its own bucket');
  });

  it('limits - MQTT 5 QoS 1 publishes on two nodes get PUBACK 0x97 over the org rate; another org is unaffected', async () => {
    const connectV5 = async (hub: MqttHub, org: string, sub: string) => {
      const raw = await RawClient.open(hub.mqttPort, 5);
      raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: `${sub}-${randomUUID().slice(0, 6)}`, keepalive: 60, username: 'x', password: Buffer.from(await issuer.token(org, sub)) } as never, 5);
      const ack = await raw.waitFor((p) => p.cmd === 'connack');
      assert.equal((ack as { reasonCode?: number }).reasonCode ?? 0, 0);
      return raw;
    };
    const a = await connectV5(n1, mqttOrg, 'm1');
    const b = await connectV5(n2, mqttOrg, 'm2');
    const ctl = await connectV5(n1, testOrg('mctl'), 'm3');
    const start = performance.now();
    const seconds = 3;
    let id = 1;
    // Each client keeps at most 50 QoS 1 publishes unacknowledged, as a client within its Receive
    // Maximum does: one that is refused is held by TCP for the retry time (holds.int.test.ts), so
    // an unbounded pipeline would only be drained at the rate, long after the flood.
    const pump = async (raw: RawClient, perTick: number) => {
      let sent = 0;
      while (performance.now() - start < seconds * 1000) {
        const outstanding = sent - raw.packets.filter((p) => p.cmd === 'puback').length;
        const n = Math.min(perTick, 50 - outstanding);
        for (let i = 0; i < n; i++) raw.send({ cmd: 'publish', topic: 'm/x', payload: Buffer.from('1'), qos: 1, messageId: (id++ % 60000) + 1, retain: false, dup: false } as never, 5);
        sent += Math.max(0, n);
        await sleep(25);
      }
      return sent;
    };
    const [sentA, sentB, sentCtl] = await Promise.all([pump(a, 8), pump(b, 8), pump(ctl, 1)]);
    const acks = async (raw: RawClient, n: number) => {
      const deadline = Date.now() + 10_000;
      while (raw.packets.filter((p) => p.cmd === 'puback').length < n && Date.now() < deadline) await sleep(20);
      return raw.packets.filter((p) => p.cmd === 'puback').map((p) => (p as { reasonCode?: number }).reasonCode ?? 0);
    };
    const codes = [...(await acks(a, sentA)), ...(await acks(b, sentB))];
    // Tokens accrue until the last publish was handled: the ones still held when the pump stopped
    // are handled up to a hold later.
    const elapsed = (performance.now() - start) / 1000;
    assert.equal(codes.length, sentA + sentB, 'every QoS 1 publish is acknowledged');
    near(codes.filter((c) => c === 0).length, RATE + RATE * elapsed, 'MQTT publishes');
    assert.deepEqual(new Set(codes.filter((c) => c !== 0)), new Set([0x97]));
    assert.deepEqual(new Set(await acks(ctl, sentCtl)), new Set([0]), 'the other org is never refused');
    for (const r of [a, b, ctl]) r.socket.destroy();
  });

  it('limits - sustained abuse closes a WebSocket with 4003', async () => {
    const c = await open(n1, abuseOrg, 'flood');
    for (let i = 0; i < 4000 && c.closeCode === undefined; i++) c.send({ op: 'pub', topic: 'a/b', data: i });
    assert.equal(await Promise.race([c.closed, sleep(10_000).then(() => -1)]), 4003);
    const polite = await open(n2, abuseOrg, 'polite');
    assert.equal((await polite.request({ op: 'pub', topic: 'a/b', data: 1 })).op, 'ok', 'a connection of the same org within its rate stays');
  });

  it('limits - the per-org connection cap holds across both nodes (WebSocket and MQTT); another org is unaffected', async () => {
    const first = [await open(n1, capOrg, 'u1'), await open(n2, capOrg, 'u2'), await open(n1, capOrg, 'u3')];
    await assert.rejects(open(n2, capOrg, 'u4'), (err: { status?: number; body?: string }) => err.status === 429 && err.body === 'connection_limit');
    const raw = await RawClient.open(n1.mqttPort, 5);
    raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: 'cap-m', keepalive: 60, username: 'x', password: Buffer.from(await issuer.token(capOrg, 'u5')) } as never, 5);
    const ack = (await raw.waitFor((p) => p.cmd === 'connack')) as { reasonCode?: number };
    assert.equal(ack.reasonCode, 0x97, 'MQTT 5 CONNACK quota exceeded');
    raw.socket.destroy();
    const ctl = testOrg('ctl');
    for (let i = 0; i < 4; i++) await open(i % 2 ? n1 : n2, ctl, `c${i}`);
    await first[1].close();
    const deadline = Date.now() + 10_000;
    let again: TestClient | undefined;
    while (!again && Date.now() < deadline) again = await open(n1, capOrg, 'u6').catch(() => undefined);
    assert.ok(again, 'a closed connection gives its slot back');
  });

  it('limits - the per-IP cap holds across both nodes and is checked before the token', async () => {
    const lim = createRedisLimiter(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', createLogger('silent'), prefix);
    await lim.ready();
    const ipKey = slotKey(prefix, 'ip', '127.0.0.1');
    try {
      const deadline = Date.now() + 10_000;
      while ((await lim.count(ipKey)) > 0 && Date.now() < deadline) await sleep(50);
      assert.equal(await lim.count(ipKey), 0, 'earlier connections gave their slots back');
      const org = testOrg('ip');
      for (let i = 0; i < PER_IP; i++) await open(i % 2 ? n1 : n2, org, `d${i}`);
      assert.equal(await lim.count(ipKey), PER_IP);
      await assert.rejects(TestClient.connect(n1.hub.wsUrl, 'not-a-token'), (err: { status?: number; body?: string }) => err.status === 429 && err.body === 'connection_limit', 'refused before the token is looked at');
      await assert.rejects(open(n2, testOrg('other'), 'x'), (err: { status?: number }) => err.status === 429);
      await clients.pop()!.close();
      while ((await lim.count(ipKey)) >= PER_IP && Date.now() < deadline) await sleep(50);
      await assert.rejects(TestClient.connect(n1.hub.wsUrl, 'not-a-token'), (err: { status?: number }) => err.status === 401, 'with a slot free, the token is checked');
      await open(n1, org, 'again');
    } finally {
      await lim.close();
    }
  });
});
