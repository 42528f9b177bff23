import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { freePort, startHubProcess, testOrg } from '../testing/hubProcess.ts';
import { connect, RawClient, sleep, type MqttHub } from './mqttTestKit.ts';

/**
 * Hostile MQTT client ids (issue 9): refused CONNECTs whose client id holds a NUL or a surrogate
 * pair that a code-unit clip would cut used to produce audit events Postgres rejects forever, stuck
 * at the head of the shared audit buffer. Now they are recorded sanitised, another org's audit
 * events are recorded, and the backlog drains to 0 with nothing dropped.
 */
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/orghub';

describe('mqtt poison', () => {
  let issuer: TestIssuer;
  let h: MqttHub;
  let pool: pg.Pool;

  const audit = async (org: string, where = 'true', params: unknown[] = []): Promise<Array<{ type: string; data: any }>> => {
    const c = await pool.connect();
    try {
      await c.query('BEGIN; SET LOCAL ROLE orghub_projector');
      return (await c.query(`SELECT type, data FROM events WHERE org_id = $1 AND stream_id = 'audit' AND (${where}) ORDER BY global_position`, [org, ...params])).rows;
    } finally {
      await c.query('ROLLBACK');
      c.release();
    }
  };
  const until = async <T>(what: string, f: () => Promise<T | undefined>, ms = 10_000): Promise<T> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = await f();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
      await sleep(100);
    }
  };
  const metric = (text: string, name: string): number => {
    const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
    return m ? Number(m[1]) : NaN;
  };

  before(async () => {
    issuer = await createTestIssuer();
    // a small audit buffer: before the fix, stuck events here crowded out other orgs' events
    const mqttPort = await freePort();
    const hub = await startHubProcess({ ...issuer.env, ORGHUB_MQTT_PORT: String(mqttPort), ORGHUB_AUDIT_BUFFER: '100' }, { timeoutMs: 40_000 });
    h = { hub, mqttPort, tcpUrl: `mqtt://127.0.0.1:${mqttPort}`, wsUrl: `ws://127.0.0.1:${hub.port}/mqtt` };
    pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
  });
  after(async () => {
    await h?.hub.stop();
    await pool?.end();
  });

  it('mqtt poison - refused CONNECTs with NUL and split-surrogate client ids are recorded sanitised, another org is audited, and the backlog drains with nothing dropped', async () => {
    const run = randomBytes(4).toString('hex');
    const split = `${run}${'a'.repeat(119)}\u{1F600}tail`; // 127 units, then a pair at the 128th: a code-unit clip cuts it
    const ids = [`nul\u0000${run}`, split];
    // Given 30 unauthenticated CONNECTs with hostile client ids (bad credentials, so refused)
    for (let i = 0; i < 30; i++) {
      const raw = await RawClient.open(h.mqttPort, 4);
      raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 30, clientId: ids[i % 2], username: 'x', password: Buffer.from('not-a-token') });
      await raw.waitFor((p) => p.cmd === 'connack');
      raw.socket.destroy();
    }
    // When another org then connects and is audited as usual
    const org = testOrg('mqttpoison');
    const c = await connect(h.tcpUrl, await issuer.token(org, 'dev-1', ['admin']), { clientId: `ok-${run}` });
    await c.client.publishAsync('$SYS/forbidden', 'x').catch(() => {});
    await c.client.endAsync();
    // Then that org's audit events are recorded (read back from the event store)
    const types = await until('org audit events', async () => {
      const t = (await audit(org)).map((r) => r.type);
      return t.includes('audit.session.connected') && t.includes('audit.session.disconnected') ? t : undefined;
    });
    assert.ok(types.includes('audit.session.connected'));
    // And the hostile ones are recorded too, sanitised: NUL escaped, the pair kept whole then clipped
    const rejected = await until('sanitised rejections', async () => {
      const rows = await audit('_unauthenticated', `type = 'audit.session.rejected' AND starts_with(data->>'clientId', $2) OR data->>'clientId' = $3`, [`${run}a`, `nul\\u0000${run}`]);
      return rows.length >= 30 ? rows : undefined;
    });
    const clientIds = new Set(rejected.map((r) => r.data.clientId as string));
    assert.deepEqual([...clientIds].sort(), [`${run}${'a'.repeat(119)}\u{1F600}…`, `nul\\u0000${run}`].sort());
    // And the audit backlog drains to 0 with nothing dropped (/metrics)
    const text = await until('backlog 0', async () => {
      const t = await (await fetch(`${h.hub.url}/metrics`)).text();
      return metric(t, 'orghub_audit_backlog') === 0 ? t : undefined;
    });
    assert.equal(metric(text, 'orghub_audit_dropped_total'), 0);
    assert.equal(metric(text, 'orghub_audit_dead_lettered_total'), 0, 'sanitised, so nothing had to be dead-lettered');
  });
});
