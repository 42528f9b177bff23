import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import WebSocket from 'ws';
import { createTestIssuer, type TestIssuer } from '../../testing/issuer.ts';
import { startHubProcess, testOrg, type HubProcess } from '../../testing/hubProcess.ts';
import { CloseCode } from '../../errors.ts';
import { scopedKey } from '../../commands/commandService.ts';

/**
 * Rolling restart of two real hub nodes under load (docs/operations.md "Graceful drain"): WebSocket
 * clients send keyed commands one after another, retry an unanswered one with the same key, and
 * reconnect to the other node when theirs closes. Node A gets SIGTERM, is restarted on its port,
 * then node B gets SIGTERM. Proves: clients are told 4000, each drain exits 0, every client is
 * back on a node, and every acknowledged command is in the event store under its key exactly once.
 */
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/orghub';
const CLIENTS = 8;

async function waitUntil(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function wsConnections(hub: HubProcess): Promise<number> {
  const text = await (await fetch(`${hub.url}/metrics`)).text();
  return Number(/^orghub_ws_connections (\d+)/m.exec(text)![1]);
}

interface Answer {
  op: string;
  code?: string;
  eventId?: string;
  duplicate?: boolean;
}

/** One client: keyed commands in sequence; on a close it reconnects, preferring the other node. */
class Worker {
  ws?: WebSocket;
  node = -1;
  readonly closes: number[] = [];
  readonly acked = new Map<string, string>();
  retries = 0;
  duplicates = 0;
  private seq = 0;
  private stopped = false;
  private pending?: { key: string; resolve: (f: Answer | undefined) => void };

  constructor(readonly name: string, private readonly urls: () => string[], private readonly token: string) {}

  async connect(prefer: number): Promise<void> {
    const deadline = Date.now() + 25_000;
    for (;;) {
      for (const n of [prefer, 1 - prefer]) {
        const ws = new WebSocket(this.urls()[n]!, ['orghub.v1.json'], { headers: { authorization: `Bearer ${this.token}` }, perMessageDeflate: false });
        const opened = await new Promise<boolean>((resolve) => {
          ws.once('open', () => resolve(true));
          ws.once('error', () => resolve(false));
        });
        if (!opened) continue;
        this.ws = ws;
        this.node = n;
        ws.on('message', (d: Buffer) => {
          const v = JSON.parse(d.toString());
          for (const f of Array.isArray(v) ? v : [v]) if (this.pending && f.id === this.pending.key) this.pending.resolve(f);
        });
        ws.once('close', (code) => {
          this.closes.push(code);
          this.pending?.resolve(undefined);
          if (!this.stopped) void this.connect(1 - n).catch(() => {});
        });
        return;
      }
      if (Date.now() > deadline) throw new Error(`${this.name}: no node to reconnect to`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Sends command `seq` until it is answered ok (retrying with its key), then the next one. */
  async run(): Promise<void> {
    while (!this.stopped) {
      const key = `${this.name}-${this.seq}`;
      const ws = this.ws;
      let answer: Answer | undefined;
      if (ws?.readyState === WebSocket.OPEN) {
        answer = await new Promise((resolve) => {
          this.pending = { key, resolve };
          ws.send(JSON.stringify({ op: 'cmd', id: key, type: 'device.reboot', topic: 'devices/d1/commands', data: { reason: `n${this.seq}` }, key }));
        });
        this.pending = undefined;
      }
      if (answer?.op === 'ok') {
        this.acked.set(key, answer.eventId!);
        if (answer.duplicate) this.duplicates++;
        this.seq++;
        continue;
      }
      // Not answered (closed) or refused while draining: a client backoff, then the same key again.
      if (answer) assert.equal(answer.code, 'unavailable', `${key}: ${JSON.stringify(answer)}`);
      this.retries++;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  stop(): void {
    this.stopped = true;
    this.pending?.resolve(undefined);
    this.ws?.close();
  }
}

describe('ws drain', () => {
  let issuer: TestIssuer;
  const hubs: HubProcess[] = [];
  let pool: pg.Pool;
  const workers: Worker[] = [];

  before(async () => {
    issuer = await createTestIssuer();
    pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
  });
  after(async () => {
    for (const w of workers) w.stop();
    await Promise.all(hubs.map((h) => h.stop('SIGKILL')));
    await pool.end();
  });

  it('drain - a rolling restart of two nodes under load loses no acked command and every client is back on a node', { timeout: 90_000 }, async (t) => {
    const env = { ...issuer.env, ORGHUB_DRAIN_TIMEOUT_MS: '8000' };
    const [a, b] = await Promise.all([startHubProcess(env, { timeoutMs: 45_000 }), startHubProcess(env, { timeoutMs: 45_000 })]);
    const nodes = [a!, b!];
    hubs.push(a!, b!);
    const urls = () => nodes.map((h) => h.wsUrl);
    const org = testOrg('drain');
    for (let i = 0; i < CLIENTS; i++) {
      const w = new Worker(`w${i}`, urls, await issuer.token(org, `w${i}`));
      await w.connect(i % 2);
      workers.push(w);
    }
    const runs = workers.map((w) => w.run());
    const ackedNow = () => workers.reduce((n, w) => n + w.acked.size, 0);
    await waitUntil('commands acked on both nodes', () => ackedNow() >= 200);

    for (const victim of [0, 1]) {
      const before = ackedNow();
      const old = nodes[victim]!;
      const t0 = Date.now();
      const exit = await old.stop('SIGTERM');
      t.diagnostic(`node ${victim} drained in ${Date.now() - t0} ms with ${ackedNow() - before} commands acked meanwhile`);
      assert.equal(exit, 0, `node ${victim} drained within its deadline:\n${old.output().slice(-2000)}`);
      // Every client is on the surviving node, and keeps getting acks there.
      await waitUntil(`all clients on node ${1 - victim}`, () => workers.every((w) => w.node === 1 - victim && w.ws?.readyState === WebSocket.OPEN));
      const mid = ackedNow();
      await waitUntil('commands acked after the drain', () => ackedNow() >= mid + 100);
      // The drained node comes back on its port (a rolling restart).
      nodes[victim] = await startHubProcess({ ...env, ORGHUB_PORT: String(old.port) }, { timeoutMs: 45_000 });
      hubs.push(nodes[victim]!);
    }
    for (const w of workers) w.stop();
    await Promise.all(runs);
    await waitUntil('clients closed', () => workers.every((w) => w.ws?.readyState === WebSocket.CLOSED));

    // Clients were told 4000, nothing else, once per drained node they were on.
    const codes = workers.flatMap((w) => w.closes.slice(0, -1)); // the last close is the client's own
    assert.deepEqual([...new Set(codes)], [CloseCode.shutdown]);
    assert.ok(workers.every((w) => w.closes.length >= 2), 'every client was on the node drained last');
    t.diagnostic(`${ackedNow()} acked, ${workers.reduce((n, w) => n + w.retries, 0)} retries, ${workers.reduce((n, w) => n + w.duplicates, 0)} acks lost and recovered by key`);

    // Every acked command is in the store exactly once, with the event id its ack named.
    const c = await pool.connect();
    let rows: { idempotency_key: string; event_id: string }[];
    try {
      await c.query('BEGIN; SET LOCAL ROLE orghub_projector');
      rows = (await c.query(`SELECT idempotency_key, event_id::text FROM events WHERE org_id = $1 AND stream_id LIKE 'commands:%'`, [org])).rows;
    } finally {
      await c.query('ROLLBACK');
      c.release();
    }
    const byKey = new Map(rows.map((r) => [r.idempotency_key, r.event_id]));
    assert.equal(byKey.size, rows.length, 'no key twice');
    assert.ok(ackedNow() >= 400);
    for (const w of workers) for (const [key, eventId] of w.acked) assert.equal(byKey.get(scopedKey(w.name, key)), eventId, `${key} recorded under its acked id`);
  });
});
