// test-run: serial (timing assertions; scripts/test.mjs runs these one at a time after the rest)
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { freePort, startHubProcess, testOrg, type HubProcess } from '../testing/hubProcess.ts';
import { TestClient, sleep } from '../testing/wsClient.ts';

/**
 * Redis outage: a dedicated redis-server on a free port (never the shared one) is killed and
 * restarted in the middle of a run. The hub keeps serving on local buckets (limits still apply,
 * per node), reports itself degraded, and goes back to the cluster buckets by itself.
 */
/** Low, so that the flood (~100-250/s from this test on a busy machine) stays well above it. */
const RATE = 20;
const prefix = 'orghub-outage:';

function startRedis(port: number, dir: string): Promise<ChildProcess> {
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + 10_000;
    const probe = async () => {
      const r = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      r.on('error', () => {});
      try {
        await r.connect();
        await r.ping();
        r.disconnect();
        resolve(child);
      } catch {
        r.disconnect();
        if (Date.now() > deadline) reject(new Error('redis-server did not start'));
        else setTimeout(probe, 100);
      }
    };
    void probe();
  });
}

async function metric(hub: HubProcess, name: string): Promise<number> {
  const text = await (await fetch(`${hub.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line ? Number(line.split(' ').pop()) : NaN;
}

async function until(what: string, pred: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

describe('limits under a Redis outage', () => {
  let issuer: TestIssuer;
  let hub: HubProcess;
  let redis: ChildProcess | undefined;
  let port: number;
  let dir: string;
  const org = testOrg('outage');
  const clients: TestClient[] = [];
  const cleanups: (() => void)[] = [];

  before(async () => {
    issuer = await createTestIssuer();
    port = await freePort();
    dir = mkdtempSync(join(tmpdir(), 'orghub-redis-'));
    redis = await startRedis(port, dir);
    hub = await startHubProcess(
      { ...issuer.env, ORGHUB_EVENT_STORE: 'none', REDIS_URL: `redis://127.0.0.1:${port}`, ORGHUB_LIMITS_PREFIX: prefix, ORGHUB_LIMITS_ORGS: JSON.stringify({ [org]: { publish: { org: RATE }, orgBurstSeconds: 1, connections: { org: 50 } } }) },
      { timeoutMs: 60_000 },
    );
  });
  after(async () => {
    for (const f of cleanups) f();
    await Promise.all(clients.map((c) => c.close()));
    await hub?.stop();
    redis?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  /** Offers ~250/s for `ms` and returns the accepted count and the seconds until the last one. */
  async function flood(c: TestClient, ms: number): Promise<{ accepted: number; refused: number; seconds: number }> {
    const start = performance.now();
    let accepted = 0;
    let refused = 0;
    let lastOk = start;
    while (performance.now() - start < ms) {
      const rs = await Promise.all(Array.from({ length: 10 }, () => c.request({ op: 'pub', topic: 'o/x', data: 1 }, 10_000)));
      for (const r of rs) {
        if (r.op === 'ok') {
          accepted++;
          lastOk = performance.now();
        } else {
          assert.equal(r.code, 'rate_limited', JSON.stringify(r));
          refused++;
        }
      }
      await sleep(40);
    }
    return { accepted, refused, seconds: (lastOk - start) / 1000 };
  }

  it('limits - Redis killed and restarted mid-run: the hub keeps serving on local buckets and recovers by itself', async () => {
    const probe = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on('error', () => {});
    cleanups.push(() => probe.disconnect());
    const pub = await TestClient.connect(hub.wsUrl, await issuer.token(org, 'p'));
    const watcher = await TestClient.connect(hub.wsUrl, await issuer.token(org, 'w'));
    clients.push(pub, watcher);
    assert.equal((await watcher.request({ op: 'sub', topic: 'o/#' })).op, 'ok');

    // 1. Redis up: the org bucket lives in Redis.
    const before = await flood(pub, 2000);
    // (refused rarely: a refused connection is held for retryAfterMs, its frames wait; holds.int.test.ts)
    assert.ok(before.refused >= 2, `precondition: the flood offers well over the rate (${before.accepted} accepted, ${before.refused} refused)`);
    assert.ok(Math.abs(before.accepted - (RATE + RATE * before.seconds)) <= (RATE + RATE * before.seconds) * 0.1, `accepted ${before.accepted} in ${before.seconds} s`);
    assert.ok((await probe.keys(`${prefix}b:pub:o:${org}`)).length === 1, 'the org bucket is in Redis');
    assert.equal(await metric(hub, 'orghub_limit_degraded'), 0);
    probe.disconnect();

    // 2. Redis killed: publishes, deliveries and new connections go on; the limit still applies, locally.
    redis!.kill('SIGKILL');
    await new Promise((r) => redis!.once('exit', r));
    redis = undefined;
    await sleep(1200); // let the bucket refill, so the local phase starts like the first
    const during = await flood(pub, 2000);
    assert.ok(during.accepted > 0, 'the hub keeps accepting publishes');
    assert.ok(during.refused > 0, 'and keeps limiting them');
    assert.ok(during.accepted <= (RATE + RATE * during.seconds) * 1.1 + RATE, `local bucket: accepted ${during.accepted} in ${during.seconds} s`);
    await until('degraded metric', async () => (await metric(hub, 'orghub_limit_degraded')) === 1 || (await metric(hub, 'orghub_limit_fallbacks_total')) >= 1);
    // New connections fail closed, but because of the revocation list (docs/access.md), not the limits.
    await assert.rejects(TestClient.connect(hub.wsUrl, await issuer.token(org, 'late')), (e: any) => e.status === 503 && e.body === 'revocation_list_unavailable');
    await until('deliveries during the outage', async () => watcher.messages().length >= before.accepted + during.accepted);
    const ready = (await (await fetch(`${hub.url}/ready`)).json()) as { checks: Record<string, { status: string; degraded?: boolean }> };
    assert.equal(ready.checks.limits.status, 'up', 'limits do not make the hub unready (they run on local buckets)');
    assert.equal(ready.checks.revocations.status, 'down', 'the revocation list does, as documented');
    assert.equal(ready.checks.redis?.status, 'down', 'Redis is named, and down');

    // 3. Redis back on the same port: the hub returns to the cluster buckets by itself.
    redis = await startRedis(port, dir);
    const back = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 0, retryStrategy: () => null });
    back.on('error', () => {});
    cleanups.push(() => back.disconnect());
    try {
      await until('the node heartbeat in the new Redis', async () => (await back.hlen(`${prefix}nodes`).catch(() => 0)) >= 1);
      await until('not degraded', async () => (await metric(hub, 'orghub_limit_degraded')) === 0);
      // Redis is back: new connections are admitted again (the revocation list reloaded).
      let late: TestClient | undefined;
      await until('a new connection is admitted', async () => {
        late = await TestClient.connect(hub.wsUrl, await issuer.token(org, 'late')).catch(() => undefined);
        return late !== undefined;
      });
      clients.push(late!);
      assert.equal((await late!.request({ op: 'sub', topic: 'o/late' })).op, 'ok');
      await sleep(1200);
      const after = await flood(pub, 2000);
      assert.ok(after.refused > 0);
      assert.ok((await back.keys(`${prefix}b:pub:o:${org}`)).length === 1, 'the org bucket is in Redis again');
      assert.ok(Math.abs(after.accepted - (RATE + RATE * after.seconds)) <= (RATE + RATE * after.seconds) * 0.1, `after recovery: accepted ${after.accepted} in ${after.seconds} s`);
      const slots = await back.hgetall(`${prefix}c:o:${org}`);
      assert.equal(Object.values(slots).reduce((a, b) => a + Number(b), 0), 3, 'three open connections: two re-asserted by the heartbeat, one taken after recovery');
    } finally {
      back.disconnect();
    }
  });
});
