import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { freePort, startHubProcess, testOrg, type HubProcess } from '../testing/hubProcess.ts';
import { sleep, TestClient } from '../testing/wsClient.ts';
import { scopedKey } from './commandService.ts';

/**
 * Postgres outage, without touching the machine's Postgres: the hub reaches Postgres through a TCP
 * proxy owned by this test, which can be cut (every socket destroyed, new ones refused) and restored.
 */
const PG_HOST = '127.0.0.1';
const PG_PORT = 5432;
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/orghub';

/** A loopback TCP forwarder to Postgres that can be switched off and on. */
class PgProxy {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  constructor(readonly port: number) {}

  async on(): Promise<void> {
    if (this.server) return;
    const server = net.createServer((client) => {
      const upstream = net.connect(PG_PORT, PG_HOST);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {});
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.server = server;
  }

  /** Cuts every connection and closes the listener, so new connections are refused. */
  async off(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

describe('commands failure', () => {
  let issuer: TestIssuer;
  let proxy: PgProxy;
  let hub: HubProcess;
  let pool: pg.Pool;
  const clients: TestClient[] = [];

  const ready = async () => {
    const r = await fetch(`${hub.url}/ready`);
    return { status: r.status, body: (await r.json()) as any };
  };
  const waitFor = async <T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await fn();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(100);
    }
  };
  const rows = async (org: string, where: string, params: unknown[] = []) => {
    const c = await pool.connect();
    try {
      await c.query('BEGIN; SET LOCAL ROLE orghub_projector');
      return (await c.query(`SELECT type, data, metadata, idempotency_key FROM events WHERE org_id = $1 AND (${where}) ORDER BY global_position`, [org, ...params])).rows;
    } finally {
      await c.query('ROLLBACK');
      c.release();
    }
  };
  /** Waits until the audit buffer is flushed and no append is queued or in flight, so that the cut falls between transactions. */
  const quiet = () =>
    waitFor(
      'audit and appends settled',
      async () => {
        const text = await (await fetch(`${hub.url}/metrics`)).text();
        const gauge = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
        return gauge('orghub_audit_backlog') === 0 && gauge('orghub_eventstore_pending') === 0 ? true : undefined;
      },
      10_000,
    );
  const connect = async (org: string, sub: string, roles: string[] = ['admin']) => {
    const c = await TestClient.connect(hub.wsUrl, await issuer.token(org, sub, roles));
    clients.push(c);
    return c;
  };

  before(async () => {
    issuer = await createTestIssuer();
    proxy = new PgProxy(await freePort());
    await proxy.on();
    // the same database as DATABASE_URL (the test reads it back there), reached through the proxy
    const viaProxy = new URL(DATABASE_URL);
    viaProxy.host = `127.0.0.1:${proxy.port}`;
    hub = await startHubProcess({ ...issuer.env, ORGHUB_LIMITS: 'off' /* 3000 commands at once is the point here, not a rate to refuse */, DATABASE_URL: viaProxy.toString() }, { timeoutMs: 40_000 });
    pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    if (hub && hub.child.exitCode !== null) process.stderr.write(`hub exited early (${hub.child.exitCode}):\n${hub.output()}\n`);
    await hub?.stop();
    await proxy?.off();
    await pool?.end();
  });

  it('failure - while Postgres is unreachable commands should fail fast with unavailable, pub/sub should work, and the hub should recover by itself', async () => {
    const org = testOrg();
    const admin = await connect(org, 'alice');
    const watcher = await connect(org, 'watcher');
    assert.equal((await watcher.request({ op: 'sub', topic: 'devices/#' })).op, 'ok');
    const before = await admin.request({ op: 'cmd', type: 'device.reboot', topic: 'devices/d1/commands', data: {}, key: 'before' });
    assert.equal(before.op, 'ok', JSON.stringify(before));

    // When Postgres goes away (between transactions: the cut mid-transaction is the last test)
    await quiet();
    await proxy.off();

    // Then a command is refused with unavailable, quickly, and is not recorded
    const t0 = Date.now();
    const during = await admin.request({ op: 'cmd', type: 'device.reboot', topic: 'devices/d1/commands', data: { reason: 'outage' }, key: 'during' }, 5000);
    const took = Date.now() - t0;
    assert.deepEqual([during.op, during.code], ['err', 'unavailable'], JSON.stringify(during));
    assert.ok(took < 3000, `unavailable after ${took} ms`);
    const httpT0 = Date.now();
    const http = await fetch(`${hub.url}/v1/commands`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await issuer.token(org, 'alice')}`, 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'device.reboot', topic: 'devices/d1/commands', data: {}, key: 'during-http' }),
    });
    assert.equal(http.status, 503);
    assert.equal(((await http.json()) as any).error.code, 'unavailable');
    assert.ok(Date.now() - httpT0 < 3000);

    // And pub/sub is untouched
    assert.equal((await admin.request({ op: 'pub', topic: 'devices/d1/telemetry', data: { t: 21 } })).op, 'ok');
    assert.deepEqual((await watcher.waitFor((f) => f.op === 'msg' && f.topic === 'devices/d1/telemetry')).data, { t: 21 });

    // And /ready names the event store as down
    const down = await waitFor('eventstore down', async () => {
      const r = await ready();
      return r.body.checks.eventstore.status === 'down' ? r : undefined;
    }, 5000);
    assert.equal(down.status, 503);
    assert.equal(down.body.checks.nats.status, 'up');

    // And audit events of the outage wait in the buffer: a connect, a denied subscribe, a disconnect
    const device = await connect(org, 'd1', ['device']);
    assert.equal((await device.request({ op: 'sub', topic: 'devices/d2/#' })).code, 'forbidden');
    await device.close();
    const backlog = await waitFor('audit backlog', async () => {
      const r = await ready();
      return r.body.checks.audit.backlog >= 3 ? r.body.checks.audit : undefined;
    }, 5000);
    assert.equal(backlog.dropped, 0);
    assert.equal((await rows(org, `metadata->>'actor' = 'd1'`)).length, 0, 'nothing of the outage is recorded yet');

    // When Postgres returns
    await proxy.on();

    // Then the hub is ready again without a restart, and the audit backlog drains
    const up = await waitFor('ready again', async () => {
      const r = await ready();
      return r.status === 200 && r.body.checks.audit.backlog === 0 ? r : undefined;
    }, 15_000);
    assert.equal(up.body.checks.eventstore.status, 'up');
    const recorded = await rows(org, `metadata->>'actor' = 'd1' AND stream_id = 'audit'`);
    assert.deepEqual(recorded.map((r) => r.type), ['audit.session.connected', 'audit.subscribe.denied', 'audit.session.disconnected']);
    assert.equal(recorded[1].data.pattern, 'devices/d2/#');

    // And commands work again; the refused one was never recorded, so its retry appends it now
    const retried = await admin.request({ op: 'cmd', type: 'device.reboot', topic: 'devices/d1/commands', data: { reason: 'outage' }, key: 'during' });
    assert.equal(retried.op, 'ok', JSON.stringify(retried));
    assert.equal(retried.duplicate, undefined);
    assert.deepEqual((await rows(org, `idempotency_key IS NOT NULL`)).map((r) => r.idempotency_key), [scopedKey('alice', 'before'), scopedKey('alice', 'during')]);
    await watcher.waitFor((f) => f.op === 'msg' && f.data?.commandId === retried.eventId);
  });

  it('failure - a second outage should be survived the same way (the pool does not keep dead connections)', async () => {
    const org = testOrg();
    const admin = await connect(org, 'alice');
    for (let round = 0; round < 2; round++) {
      await quiet();
      await proxy.off();
      const r = await admin.request({ op: 'cmd', type: 'device.config', topic: 'devices/d1/commands', data: { settings: { round } }, key: `r${round}` }, 5000);
      assert.equal(r.code, 'unavailable');
      await proxy.on();
      const ok = await waitFor('command accepted', async () => {
        const a = await admin.request({ op: 'cmd', type: 'device.config', topic: 'devices/d1/commands', data: { settings: { round } }, key: `r${round}` }, 5000);
        return a.op === 'ok' ? a : undefined;
      }, 10_000);
      assert.ok(ok.eventId);
    }
    assert.equal((await rows(org, `idempotency_key LIKE '${scopedKey('alice', 'r')}%'`)).length, 2);
    const k = randomUUID();
    assert.equal((await admin.request({ op: 'cmd', type: 'device.reboot', topic: 'devices/d1/commands', data: {}, key: k })).op, 'ok');
  });
  it('failure - cutting Postgres in the middle of in-flight appends should not crash the hub: each command gets ok or unavailable', async () => {
    const org = testOrg();
    const admin = await connect(org, 'alice');
    await quiet();
    // When 3000 commands are in flight and the connection to Postgres is cut after the first acks
    // (3000, not 300: a fast machine once acked 300 before the cut landed)
    const answers: Promise<Record<string, any>>[] = [];
    for (let i = 0; i < 3000; i++) answers.push(admin.request({ op: 'cmd', type: 'device.reboot', topic: `devices/d${i % 10}/commands`, data: {}, key: `mid-${i}` }, 10_000));
    await admin.waitFor((f) => f.op === 'ok' && typeof f.id === 'number' && f.id > 1, 5000);
    await proxy.off();
    const settled = await Promise.allSettled(answers);

    // Then the hub is still running (it answers a ping and /health after every answer), and every command was answered with ok or unavailable
    await admin.settle();
    assert.equal((await fetch(`${hub.url}/health`)).status, 200);
    assert.equal(hub.child.exitCode, null, `the hub died when Postgres went away:\n${hub.output().slice(-3000)}`);
    const codes = settled.map((s) => (s.status === 'fulfilled' ? (s.value.op === 'ok' ? 'ok' : s.value.code) : 'no answer'));
    assert.deepEqual([...new Set(codes)].filter((c) => c !== 'ok' && c !== 'unavailable'), [], codes.join(','));
    assert.ok(codes.includes('unavailable'), 'the cut happened while commands were in flight');

    // And after Postgres returns every acked command is recorded, and the rest can be retried
    await proxy.on();
    await waitFor('ready again', async () => ((await ready()).status === 200 ? true : undefined), 15_000);
    const acked = settled.flatMap((s, i) => (s.status === 'fulfilled' && s.value.op === 'ok' ? [`mid-${i}`] : []));
    const recorded = new Set((await rows(org, `idempotency_key LIKE '${scopedKey('alice', 'mid-')}%'`)).map((r) => r.idempotency_key as string));
    for (const k of acked) assert.ok(recorded.has(scopedKey('alice', k)), `acked ${k} is recorded`);
  });
});
