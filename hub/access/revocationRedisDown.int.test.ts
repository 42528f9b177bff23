import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { freePort, startHubProcess, testOrg, type HubProcess } from '../testing/hubProcess.ts';
import { sleep, TestClient } from '../testing/wsClient.ts';

const REDIS_SERVER = process.env.REDIS_SERVER_BIN || 'redis-server';

/** A throwaway redis-server on its own port (the shared one is never stopped). */
async function startRedis(port: number): Promise<ChildProcess> {
  const child = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const deadline = Date.now() + 10_000;
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      import('node:net').then(({ connect }) => {
        const s = connect(port, '127.0.0.1');
        s.once('connect', () => (s.destroy(), resolve(true)));
        s.once('error', () => resolve(false));
      });
    });
    if (up) return child;
    if (Date.now() > deadline) throw new Error('redis-server did not start');
    await sleep(50);
  }
}

/**
 * While Redis is down a node cannot know of new revocations, so it refuses new tokens (fail closed);
 * the revocations it already holds keep applying, and established sessions carry on.
 */
describe('revocation while Redis is down', () => {
  let issuer: TestIssuer;
  let hub: HubProcess;
  let redis: ChildProcess;
  let redisPort: number;
  const clients: TestClient[] = [];

  const ready = async (want: boolean) => {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const r = await fetch(`${hub.url}/ready`);
      const body = (await r.json()) as { checks: Record<string, { status: string }> };
      if (body.checks.revocations?.status === (want ? 'up' : 'down')) return;
      if (Date.now() > deadline) throw new Error(`/ready never became ${want}: ${JSON.stringify(body)}`);
      await sleep(100);
    }
  };

  before(async () => {
    issuer = await createTestIssuer();
    redisPort = await freePort();
    redis = await startRedis(redisPort);
    hub = await startHubProcess({ ...issuer.env, REDIS_URL: `redis://127.0.0.1:${redisPort}` }, { timeoutMs: 90_000 });
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await hub?.stop();
    redis?.kill('SIGKILL');
  });

  it('revocation - Redis down: new tokens fail closed with 503, known revocations still refuse, live sessions carry on; back up: accepted again', async () => {
    const org = testOrg();
    const admin = await issuer.token(org, 'root', ['admin']);
    const revoked = await issuer.token(org, 'gone', ['device'], { jti: 'gone-1' });
    const r = await fetch(`${hub.url}/v1/revocations`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: JSON.stringify({ jti: 'gone-1' }) });
    assert.equal(r.status, 200);
    const live = await TestClient.connect(hub.wsUrl, await issuer.token(org, 'live', ['device']));
    clients.push(live);

    redis.kill('SIGKILL');
    await new Promise((res) => redis.once('exit', res));
    await ready(false);

    await assert.rejects(TestClient.connect(hub.wsUrl, await issuer.token(org, 'fresh', ['device'])), (e: any) => e.status === 503 && e.body === 'revocation_list_unavailable');
    await assert.rejects(TestClient.connect(hub.wsUrl, revoked), (e: any) => e.status === 401 && e.body === 'token_revoked', 'the in-memory copy still refuses the revoked token');
    const down = await fetch(`${hub.url}/v1/revocations`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: JSON.stringify({ jti: 'x' }) });
    assert.equal(down.status, 503);
    assert.equal(((await down.json()) as any).error.code, 'unavailable');
    assert.equal((await live.request({ op: 'sub', topic: 'devices/live/#' })).op, 'ok', 'an established session keeps working');

    redis = await startRedis(redisPort);
    await ready(true);
    const back = await TestClient.connect(hub.wsUrl, await issuer.token(org, 'fresh', ['device']));
    clients.push(back);
    // The new Redis is empty (no persistence), yet the node still holds the revocation it knew.
    await assert.rejects(TestClient.connect(hub.wsUrl, revoked), (e: any) => e.status === 401 && e.body === 'token_revoked');
  });
});
