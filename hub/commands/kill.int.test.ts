import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import pg from 'pg';
import WebSocket from 'ws';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { startHubProcess, testOrg, type HubProcess } from '../testing/hubProcess.ts';
import { scopedKey } from './commandService.ts';

/**
 * Kill test: 10,000 keyed commands pipelined over WebSocket, the hub SIGKILLed at a random moment
 * in the middle, restarted on the same port, and every unacked command retried with its key.
 * Proves: an ack means recorded (exactly once), and retries never record a key twice.
 */
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/orghub';
const TOTAL = 10_000;
const IN_FLIGHT = 200;

interface Answer {
  op: string;
  id: number;
  eventId?: string;
  position?: string;
  duplicate?: boolean;
  code?: string;
  message?: string;
}

/** A minimal pipelining client: request ids are command indexes; a closed socket fails what is pending. */
class Pipe {
  private readonly pending = new Map<number, { resolve: (a: Answer) => void; reject: (e: Error) => void }>();
  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (buf: Buffer) => {
      const v = JSON.parse(buf.toString());
      for (const f of Array.isArray(v) ? v : [v]) {
        const p = this.pending.get(f.id);
        if (p && (f.op === 'ok' || f.op === 'err')) {
          this.pending.delete(f.id);
          p.resolve(f);
        }
      }
    });
    ws.on('close', () => {
      for (const p of this.pending.values()) p.reject(new Error('connection closed'));
      this.pending.clear();
    });
    ws.on('error', () => {});
  }

  static open(url: string, token: string): Promise<Pipe> {
    const ws = new WebSocket(url, ['orghub.v1.json'], { headers: { authorization: `Bearer ${token}` }, perMessageDeflate: false });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new Pipe(ws)));
      ws.once('error', reject);
    });
  }

  cmd(i: number): Promise<Answer> {
    return new Promise((resolve, reject) => {
      if (this.ws.readyState !== WebSocket.OPEN) return reject(new Error('connection closed'));
      this.pending.set(i, { resolve, reject });
      this.ws.send(JSON.stringify({ op: 'cmd', id: i, type: 'device.reboot', topic: `devices/d${i % 50}/commands`, data: { reason: `n${i}` }, key: `k-${i}` }));
    });
  }

  close(): void {
    this.ws.close();
  }
}

/** Sends `indexes` with at most IN_FLIGHT outstanding; calls `onAnswer` per answer; stops at the first closed-socket failure. */
async function pump(pipe: Pipe, indexes: number[], onAnswer: (i: number, a: Answer) => void): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < indexes.length) {
      const i = indexes[next++];
      let a: Answer;
      try {
        a = await pipe.cmd(i);
      } catch {
        return;
      }
      onAnswer(i, a);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
}

describe('commands kill', () => {
  let issuer: TestIssuer;
  let hub: HubProcess | undefined;
  let pool: pg.Pool;

  before(async () => {
    issuer = await createTestIssuer();
    pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
  });
  after(async () => {
    await hub?.stop('SIGKILL');
    await pool.end();
  });

  it('kill - after SIGKILL and retries, every acked command is recorded exactly once and no key twice', { timeout: 58_000 }, async (t) => {
    const org = testOrg('kill');
    const token = await issuer.token(org, 'alice');
    // Limits off: 10,000 pipelined commands and their retries are the point here, not a rate to refuse.
    const env = { ...issuer.env, ORGHUB_LIMITS: 'off' };
    hub = await startHubProcess(env, { timeoutMs: 40_000 });
    const port = hub.port;

    // Given 10,000 keyed commands in flight, 200 at a time
    const acked = new Map<number, Answer>();
    const killAfter = randomInt(1_500, 8_000); // a random moment, always mid-run
    let killedAt = 0;
    const t0 = Date.now();
    const first = await Pipe.open(hub.wsUrl, token);
    const victim = hub;
    await pump(first, Array.from({ length: TOTAL }, (_, i) => i), (i, a) => {
      assert.equal(a.op, 'ok', `command ${i} before the kill: ${JSON.stringify(a)}`);
      acked.set(i, a);
      // When the hub is SIGKILLed at that moment
      if (acked.size === killAfter && !killedAt) {
        killedAt = Date.now() - t0;
        victim.child.kill('SIGKILL');
      }
    });
    await victim.stop('SIGKILL');
    assert.ok(killedAt > 0, 'the hub was killed mid-run');
    assert.ok(acked.size < TOTAL, 'some commands were not acked');
    t.diagnostic(`killed after ${killedAt} ms with ${acked.size} acked`);

    // And restarted on the same port; the client retries everything not acked, same keys
    hub = await startHubProcess({ ...env, ORGHUB_PORT: String(port) }, { timeoutMs: 40_000 });
    const second = await Pipe.open(hub.wsUrl, token);
    const unacked = Array.from({ length: TOTAL }, (_, i) => i).filter((i) => !acked.has(i));
    const retried = new Map<number, Answer>();
    await pump(second, unacked, (i, a) => retried.set(i, a));
    assert.equal(retried.size, unacked.length);
    for (const [i, a] of retried) assert.equal(a.op, 'ok', `retry ${i}: ${JSON.stringify(a)}`);
    const recoveredByKey = [...retried.values()].filter((a) => a.duplicate).length;
    t.diagnostic(`${unacked.length} retried, ${recoveredByKey} of them were recorded before the kill (ack lost)`);

    // And a retry of an already acked command answers the original (a random sample, to bound the runtime)
    const sample = [...acked.keys()].sort(() => Math.random() - 0.5).slice(0, 2000);
    const again = new Map<number, Answer>();
    await pump(second, sample, (i, a) => again.set(i, a));
    assert.equal(again.size, sample.length);
    for (const [i, a] of again) {
      const orig = acked.get(i)!;
      assert.deepEqual([a.op, a.eventId, a.position, a.duplicate], ['ok', orig.eventId, orig.position, true], `re-retry of acked ${i}`);
    }
    second.close();

    // Then the store holds each key exactly once, 10,000 in all, and every acked id under its key
    const c = await pool.connect();
    let rows: { idempotency_key: string; event_id: string; data: { reason: string } }[];
    try {
      await c.query('BEGIN; SET LOCAL ROLE orghub_projector');
      rows = (await c.query(`SELECT idempotency_key, event_id::text, data FROM events WHERE org_id = $1 AND stream_id LIKE 'commands:%'`, [org])).rows;
    } finally {
      await c.query('ROLLBACK');
      c.release();
    }
    assert.equal(rows.length, TOTAL);
    const byKey = new Map(rows.map((r) => [r.idempotency_key, r]));
    assert.equal(byKey.size, TOTAL, 'no key twice');
    for (let i = 0; i < TOTAL; i++) {
      const r = byKey.get(scopedKey('alice', `k-${i}`));
      assert.ok(r, `k-${i} recorded`);
      assert.equal(r.data.reason, `n${i}`);
      const answer = acked.get(i) ?? retried.get(i)!;
      assert.equal(r.event_id, answer.eventId, `k-${i} answered with its recorded event id`);
    }
    t.diagnostic(`total ${Date.now() - t0} ms`);
  });
});
