import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { startHubProcess, testOrg, type HubProcess } from '../testing/hubProcess.ts';
import { TestClient, type Frame } from '../testing/wsClient.ts';

/**
 * Poison commands (issue 9): hostile text from one org fails that org's commands with `invalid`
 * and never the commands of another org that share its group-commit batches. A real hub process,
 * real WebSocket clients with real tokens, and the events table read back.
 */
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/orghub';

describe('poison commands', () => {
  let issuer: TestIssuer;
  let hub: HubProcess;
  let pool: pg.Pool;
  const clients: TestClient[] = [];

  const commandCount = async (org: string): Promise<number> => {
    const c = await pool.connect();
    try {
      await c.query('BEGIN; SET LOCAL ROLE orghub_projector');
      const r = await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM events WHERE org_id = $1 AND stream_id LIKE 'commands:%'`, [org]);
      return r.rows[0].n;
    } finally {
      await c.query('ROLLBACK');
      c.release();
    }
  };

  before(async () => {
    issuer = await createTestIssuer();
    // a long group-commit window, so A's and B's commands really do share batches
    hub = await startHubProcess({ ...issuer.env, ORGHUB_GROUP_COMMIT_MS: '20' }, { timeoutMs: 40_000 });
    pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await hub?.stop();
    await pool?.end();
  });

  it('poison commands - 50 commands with lone surrogates from org A get invalid while org B\'s 50 concurrent commands are all acked', async () => {
    const [orgA, orgB] = [testOrg('poison'), testOrg('poison')];
    const a = await TestClient.connect(hub.wsUrl, await issuer.token(orgA, 'admin-a', ['admin']));
    const b = await TestClient.connect(hub.wsUrl, await issuer.token(orgB, 'admin-b', ['admin']));
    clients.push(a, b);
    // Given 50 raw text frames whose JSON holds a lone surrogate escape (JSON.stringify would not
    // produce it from a JS string in a way that reaches the hub, so the frame text is written as is)
    const aAnswers: Promise<Frame>[] = [];
    // (ids from 1001, clear of the ids `request` hands out)
    for (let i = 1001; i <= 1050; i++) {
      aAnswers.push(a.waitFor((f) => (f.op === 'ok' || f.op === 'err') && f.id === i, 15_000));
      a.sendRaw(`{"op":"cmd","id":${i},"type":"device.reboot","topic":"devices/d1/commands","data":{"reason":"x\\ud800y"},"key":"a-${i}"}`);
    }
    // and, at the same time, 50 good commands of org B
    const bAnswers = Array.from({ length: 50 }, (_, i) => b.request({ op: 'cmd', type: 'device.reboot', topic: 'devices/d1/commands', data: { reason: `fine ${i} \u{1F600}` }, key: `b-${i}` }, 15_000));
    const [aa, bb] = await Promise.all([Promise.all(aAnswers), Promise.all(bAnswers)]);
    // Then every B command is acked, and every A command gets `invalid` naming the field
    assert.deepEqual(bb.map((f) => f.op), Array(50).fill('ok'));
    assert.deepEqual(aa.map((f) => f.code), Array(50).fill('invalid'));
    assert.match(aa[0].message, /data\/reason is not well-formed Unicode/);
    // And the store holds B's 50 commands and none of A's
    assert.equal(await commandCount(orgB), 50);
    assert.equal(await commandCount(orgA), 0);
    // And A's connection still works: a well-formed command is acked (the failure was per command)
    const good = await a.request({ op: 'cmd', type: 'device.reboot', topic: 'devices/d1/commands', data: { reason: 'ok' }, key: 'a-good' });
    assert.equal(good.op, 'ok', JSON.stringify(good));
    assert.equal(await commandCount(orgA), 1);
  });

  it('poison commands - NUL in data and a lone surrogate in the key are refused with invalid over WebSocket and HTTP', async () => {
    const org = testOrg('poison');
    const token = await issuer.token(org, 'admin-c', ['admin']);
    const c = await TestClient.connect(hub.wsUrl, token);
    clients.push(c);
    const nul = await c.request({ op: 'cmd', type: 'device.config', topic: 'devices/d1/commands', data: { settings: { name: 'a\u0000b' } }, key: 'nul' });
    assert.deepEqual([nul.op, nul.code], ['err', 'invalid']);
    assert.match(nul.message, /data\/settings\/name must not contain U\+0000/);
    c.sendRaw('{"op":"cmd","id":900,"type":"device.reboot","topic":"devices/d1/commands","data":{},"key":"k\\udc00"}');
    const badKey = await c.waitFor((f) => f.id === 900);
    assert.deepEqual([badKey.op, badKey.code], ['err', 'invalid']);
    assert.match(badKey.message, /key is not well-formed/);
    const http = await fetch(`${hub.url}/v1/commands`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: '{"type":"device.reboot","topic":"devices/d1/commands","data":{"reason":"\\ud800"},"key":"h1"}',
    });
    assert.equal(http.status, 400);
    assert.equal(((await http.json()) as any).error.code, 'invalid');
    // positive control: the same HTTP command, well-formed, is recorded
    const good = await fetch(`${hub.url}/v1/commands`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: '{"type":"device.reboot","topic":"devices/d1/commands","data":{"reason":"fine"},"key":"h2"}',
    });
    assert.equal(good.status, 200);
    assert.equal(await commandCount(org), 1);
  });
});
