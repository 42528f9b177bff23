import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { freePort, startHubProcess, type HubProcess } from '../testing/hubProcess.ts';
import { waitUntil } from '../testing/until.ts';

/** The value of one unlabelled sample of a Prometheus text; undefined when absent. */
function sample(text: string, name: string): number | undefined {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

const NOT_FOUND = { error: { code: 'not_found', message: 'no such endpoint' } };

/** A real hub process (Postgres event store, real NATS) with ORGHUB_OPS_PORT set (docs/operations.md "Ops port"). */
describe('ops port', () => {
  let issuer: TestIssuer;
  let hub: HubProcess;

  before(async () => {
    issuer = await createTestIssuer();
    // Metrics re-rendered every 100 ms, so the counters below show within the test's deadlines.
    hub = await startHubProcess({ ...issuer.env, ORGHUB_OPS_PORT: String(await freePort()), ORGHUB_OPS_METRICS_CACHE_MS: '100' }, { timeoutMs: 45_000 });
  });
  after(async () => {
    if (hub) assert.equal(await hub.stop(), 0, `a SIGTERM stops the hub and its ops worker cleanly:\n${hub.output()}`);
  });

  it('ops port - /ready and /metrics answer on the ops port and 404 not_found on the main port; /health answers on both', async () => {
    assert.notEqual(hub.opsUrl, hub.url);
    const ready = await fetch(`${hub.opsUrl}/ready`);
    assert.equal(ready.status, 200);
    const body = await ready.json();
    assert.equal(body.status, 'ready');
    assert.deepEqual(Object.keys(body.checks).filter((k) => ['nats', 'eventstore'].includes(k)).sort(), ['eventstore', 'nats']);
    const metrics = await fetch(`${hub.opsUrl}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(metrics.headers.get('content-type') ?? '', /^text\/plain/);
    assert.match(await metrics.text(), /^# TYPE orghub_ready_requests_total counter$/m);
    for (const path of ['/ready', '/metrics']) {
      const r = await fetch(`${hub.url}${path}`);
      assert.equal(r.status, 404, `${path} on the main port`);
      assert.deepEqual(await r.json(), NOT_FOUND);
    }
    for (const base of [hub.url, hub.opsUrl]) {
      const r = await fetch(`${base}/health`);
      assert.equal(r.status, 200, `/health on ${base}`);
      assert.deepEqual(await r.json(), { status: 'ok' });
    }
    // The tenants' API is still on the main port, and only there.
    assert.equal((await fetch(`${hub.url}/v1/devices`)).status, 401);
    const other = await fetch(`${hub.opsUrl}/v1/devices`);
    assert.equal(other.status, 404);
    assert.deepEqual(await other.json(), NOT_FOUND);
  });

  it('ops port - a flood of hundreds of /ready requests runs the checks about once per second and counts every request', async () => {
    const scrape = async () => (await fetch(`${hub.opsUrl}/metrics`)).text();
    const before = await scrape();
    const checks0 = sample(before, 'orghub_ready_checks_total') ?? NaN;
    const requests0 = sample(before, 'orghub_ready_requests_total') ?? NaN;
    assert.ok(Number.isFinite(checks0) && Number.isFinite(requests0), before);
    const started = Date.now();
    const N = 800;
    let sent = 0;
    const statuses = new Map<number, number>();
    // 20 connections, 800 requests, spread over about 2.5 s.
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        while (sent < N) {
          sent++;
          const r = await fetch(`${hub.opsUrl}/ready`);
          await r.arrayBuffer();
          statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
          await new Promise((res) => setTimeout(res, 60));
        }
      }),
    );
    const seconds = (Date.now() - started) / 1000;
    assert.deepEqual([...statuses], [[200, N]]);
    // Every answered request reaches the counter (posted with the worker's next ask).
    const after = await waitUntil('the flood counted', async () => {
      const t = await scrape();
      return (sample(t, 'orghub_ready_requests_total') ?? 0) >= requests0 + N ? t : undefined;
    });
    assert.equal(sample(after, 'orghub_ready_requests_total'), requests0 + N, 'counted exactly once each');
    const runs = (sample(after, 'orghub_ready_checks_total') ?? NaN) - checks0;
    assert.ok(seconds > 1.5, `the flood lasted ${seconds} s`);
    // Positive control: the checks do run under the flood; bound: about one per ORGHUB_READY_CACHE_MS (1 s).
    assert.ok(runs >= 1 && runs <= Math.ceil(seconds) + 2, `${runs} check runs in ${seconds.toFixed(1)} s for ${N} requests`);
  });

  it('ops port - /ready on the ops port is 503 naming nats while NATS is unreachable', async () => {
    const deaf = await startHubProcess({ ...issuer.env, ORGHUB_OPS_PORT: String(await freePort()), NATS_URL: `nats://127.0.0.1:${await freePort()}` }, { waitReady: false });
    try {
      const body = await waitUntil('a 503 on the ops port', async () => {
        const r = await fetch(`${deaf.opsUrl}/ready`);
        return r.status === 503 ? r.json() : undefined;
      }, 45_000);
      assert.equal(body.status, 'not_ready');
      assert.equal(body.checks.nats.status, 'down');
      // The positive control is the first test: the same hub with NATS up answers 200 there.
      assert.equal((await fetch(`${deaf.url}/ready`)).status, 404);
    } finally {
      await deaf.stop('SIGKILL');
    }
  });

  it('ops port - a bad or busy ORGHUB_OPS_PORT stops the hub with exit 2 and a message naming it', async () => {
    for (const [value, message] of [
      ['70000', /ORGHUB_OPS_PORT must be <= 65535/],
      ['http', /ORGHUB_OPS_PORT must be integer/],
    ] as const) {
      const bad = await startHubProcess({ ...issuer.env, ORGHUB_OPS_PORT: value }, { waitReady: false });
      assert.equal(await new Promise((resolve) => bad.child.once('exit', resolve)), 2, bad.output());
      assert.match(bad.output(), message);
    }
    const blocker = net.createServer().listen(0, '127.0.0.1');
    await new Promise((r) => blocker.once('listening', r));
    try {
      const busy = (blocker.address() as net.AddressInfo).port;
      const bad = await startHubProcess({ ...issuer.env, ORGHUB_OPS_PORT: String(busy) }, { waitReady: false });
      assert.equal(await new Promise((resolve) => bad.child.once('exit', resolve)), 2, bad.output());
      assert.match(bad.output(), new RegExp(`cannot listen on 127\\.0\\.0\\.1:${busy} \\(ORGHUB_OPS_PORT\\)`));
    } finally {
      blocker.close();
    }
  });
});
