// test-run: serial (B's queued commands must stay under its share even when a loaded machine stalls the hub)
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type WebSocket from 'ws';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { startHubProcess, testOrg, type HubProcess } from '../testing/hubProcess.ts';
import { openWs, pacedCommands } from '../testing/flood.ts';

/**
 * Appends one org may have waiting in this hub's group commit: small, so one connection fills it,
 * yet far above what B (100 commands/s) has queued even when a loaded machine stalls the hub for a second.
 */
const PER_ORG = 300;
/** Commands org A sends every 50 ms (8000/s offered): far more than the hub records, so its share stays full. */
const BURST = 400;

/**
 * The group-commit queue bound end to end (issue 9), against a real hub process and Postgres: an
 * org that fills its share of the queue gets `overloaded` with `retryAfterMs` (WebSocket) or 503
 * with `Retry-After` (HTTP), while another org's commands are recorded in the same seconds.
 */
describe('commands overloaded', () => {
  let issuer: TestIssuer;
  let hub: HubProcess;
  const sockets: WebSocket[] = [];
  let flood: NodeJS.Timeout | undefined;

  before(async () => {
    issuer = await createTestIssuer();
    // enterprise: its per-connection command rate (20000/s) is not what stops A here; the queue is.
    hub = await startHubProcess({ ...issuer.env, ORGHUB_GROUP_COMMIT_QUEUE_PER_ORG: String(PER_ORG), ORGHUB_LIMITS_TIER: 'enterprise' }, { timeoutMs: 40_000 });
  });
  after(async () => {
    clearInterval(flood);
    for (const ws of sockets) ws.terminate();
    await hub?.stop();
  });

  it('overloaded - org A over its share of the group-commit queue gets `overloaded` with retryAfterMs (WS) and 503 with Retry-After (HTTP); org B\'s commands succeed meanwhile', async () => {
    const [orgA, orgB] = [testOrg('over-a'), testOrg('over-b')];
    const tokenA = await issuer.token(orgA, 'admin-a', ['admin']);
    const tokenB = await issuer.token(orgB, 'admin-b', ['admin']);
    const a = await openWs(hub.wsUrl, tokenA);
    const b = await openWs(hub.wsUrl, tokenB);
    sockets.push(a, b);
    // Warm the hub first (pool connections, JIT): a cold hub serves a few hundred commands a second.
    for (const [ws, who] of [[a, 'a'], [b, 'b']] as const) assert.deepEqual((await pacedCommands(ws, 200, 400, 2_000_000, `warm-${who}`)).errors, []);

    // A offers far more than the hub can record: a burst of BURST commands every 50 ms, until told to stop.
    const aErrors: Array<{ code: string; retryAfterMs?: unknown }> = [];
    let aOk = 0;
    let seq = 0;
    a.on('message', (data: Buffer) => {
      const v = JSON.parse(data.toString());
      for (const f of Array.isArray(v) ? v : [v]) {
        if (f.op === 'ok') aOk++;
        else if (f.op === 'err') aErrors.push({ code: f.code, retryAfterMs: f.retryAfterMs });
      }
    });
    const burst = () => {
      for (let i = 0; i < BURST; i++) a.send(JSON.stringify({ op: 'cmd', id: ++seq, type: 'device.reboot', topic: 'devices/d1/commands', data: { reason: 'flood' }, key: `a-${seq}` }));
    };
    burst();
    flood = setInterval(burst, 50);
    const stopFlood = () => clearInterval(flood);

    const deadline = Date.now() + 20_000;
    while (aErrors.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(aErrors.length > 0, `A never overloaded its share (${aOk} acked)`);

    // While A is refused: B's commands, over WebSocket and HTTP, are all recorded.
    const bWs = await pacedCommands(b, 100, 100, 1_000_000, `b-ws`);
    console.log('# B', bWs.errors.length, 'errors, ack p50/p99', [...bWs.latencies].sort((x, y) => x - y).filter((_, i, s) => i === 50 || i === s.length - 1).map((x) => x.toFixed(1)).join('/'), 'ms;', 'A ok', aOk, 'A err', JSON.stringify(aErrors.reduce((m, e) => ({ ...m, [e.code]: (m[e.code] ?? 0) + 1 }), {} as Record<string, number>)), 'A ws', a.readyState);
    assert.deepEqual(bWs.errors, [], 'B over WebSocket: every command acked');
    assert.equal(bWs.latencies.length, 100);
    const post = (token: string, key: string) =>
      fetch(`${hub.url}/v1/commands`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ type: 'device.reboot', topic: 'devices/d1/commands', data: { reason: 'http' }, key }) });
    for (let i = 0; i < 10; i++) {
      const r = await post(tokenB, `b-http-${i}`);
      assert.equal(r.status, 200, `B over HTTP: ${await r.text()}`);
    }
    // A over HTTP, while its flood still fills its share: 503, Retry-After, `overloaded`.
    let refused: Response | undefined;
    for (let i = 0; !refused && Date.now() < deadline + 10_000; i++) {
      // More at once than A's whole share, so some are refused even if the WebSocket flood is between bursts
      const answers = await Promise.all(Array.from({ length: 2 * PER_ORG }, (_, j) => post(tokenA, `a-http-${i}-${j}`)));
      for (const r of answers) {
        if (r.status === 503) refused ??= r;
        else assert.equal(r.status, 200, `A over HTTP: ${await r.text()}`);
      }
    }
    assert.ok(refused, 'A over HTTP was never refused while flooding');
    assert.equal(refused.headers.get('retry-after'), '1');
    const body = (await refused.json()) as { error: { code: string; retryAfterMs: number } };
    assert.equal(body.error.code, 'overloaded');
    assert.equal(body.error.retryAfterMs, 100);

    stopFlood();
    // A was served too (its share, not nothing), and every refusal is the documented one.
    assert.ok(aOk > 0, 'A got some commands through');
    assert.deepEqual([...new Set(aErrors.map((e) => e.code))], ['overloaded']);
    assert.ok(aErrors.every((e) => e.retryAfterMs === 100), `retryAfterMs: ${JSON.stringify(aErrors.slice(0, 3))}`);
    const metrics = await (await fetch(`${hub.url}/metrics`)).text();
    assert.ok(Number(/^orghub_eventstore_overloaded_total (\S+)$/m.exec(metrics)?.[1]) >= aErrors.length, 'refusals counted');

    // Once A stops, its commands are accepted again (the refusal was the bound, not a broken org).
    const aAfter = await (async () => {
      const until = Date.now() + 10_000;
      for (;;) {
        const r = await post(tokenA, `a-after-${Date.now()}`);
        if (r.status === 200 || Date.now() > until) return r.status;
        await new Promise((res) => setTimeout(res, 100));
      }
    })();
    assert.equal(aAfter, 200);
  });
});
