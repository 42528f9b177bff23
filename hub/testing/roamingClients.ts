import WebSocket from 'ws';
import pg from 'pg';
import { scopedKey } from '../commands/commandService.ts';

/**
 * WebSocket clients that behave as real clients of a multi-node hub do: when their connection
 * closes they reconnect to another node (the next one in the list that accepts), and they retry an
 * unanswered keyed command with the same key. Used by the rolling-restart and cluster-kill tests.
 */

export interface Answer {
  op: string;
  code?: string;
  eventId?: string;
  duplicate?: boolean;
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every 25 ms until it holds; throws naming `what` after `ms`. */
export async function waitUntil(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await pause(25);
  }
}

/**
 * One JSON WebSocket connection that moves to another node when it closes. `onOpen` runs on every
 * (re)connection before `node` is set (a subscriber resubscribes there); frames go to `onFrame`.
 */
export class RoamingSocket {
  ws?: WebSocket;
  /** Index in `urls()` of the node it is on; -1 before the first connection. */
  node = -1;
  /** Close codes seen, in order (the last one is the client's own once stopped). */
  readonly closes: number[] = [];
  stopped = false;
  private readonly waiters = new Map<string | number, (f: Answer | undefined) => void>();

  constructor(
    readonly name: string,
    private readonly urls: () => string[],
    private readonly token: string,
    private readonly hooks: { onOpen?: (s: RoamingSocket) => Promise<void>; onFrame?: (f: Record<string, any>) => void } = {},
  ) {}

  get isOpen(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  /** Connects to node `prefer`, or the next one that accepts; keeps trying for 25 s. */
  async connect(prefer: number): Promise<void> {
    const deadline = Date.now() + 25_000;
    for (;;) {
      const urls = this.urls();
      for (let i = 0; i < urls.length; i++) {
        if (this.stopped) return;
        const n = (prefer + i) % urls.length;
        const ws = new WebSocket(urls[n]!, ['orghub.v1.json'], { headers: { authorization: `Bearer ${this.token}` }, perMessageDeflate: false });
        const opened = await new Promise<boolean>((resolve) => {
          ws.once('open', () => resolve(true));
          ws.once('error', () => resolve(false));
        });
        if (!opened) continue;
        ws.on('error', () => {});
        ws.on('message', (d: Buffer) => {
          const v = JSON.parse(d.toString());
          for (const f of Array.isArray(v) ? v : [v]) {
            const w = f.id === undefined ? undefined : this.waiters.get(f.id);
            if (w && (f.op === 'ok' || f.op === 'err')) {
              this.waiters.delete(f.id);
              w(f);
            } else this.hooks.onFrame?.(f);
          }
        });
        ws.once('close', (code) => {
          this.closes.push(code);
          for (const w of this.waiters.values()) w(undefined);
          this.waiters.clear();
          if (!this.stopped) void this.connect(n + 1).catch(() => {});
        });
        this.ws = ws;
        try {
          await this.hooks.onOpen?.(this);
        } catch {
          ws.terminate(); // its close handler reconnects
          return;
        }
        this.node = n;
        return;
      }
      if (Date.now() > deadline) throw new Error(`${this.name}: no node to reconnect to`);
      await pause(100);
    }
  }

  /** Sends `frame` with `id` and resolves with its `ok`/`err`, or undefined when the connection closes first. */
  request(id: string, frame: Record<string, unknown>): Promise<Answer | undefined> {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      this.waiters.set(id, resolve);
      ws.send(JSON.stringify({ ...frame, id }));
    });
  }

  /**
   * Closes for good, and resolves once the close is seen and recorded in `closes` (a test that reads
   * `closes` right after stopping would otherwise race the close handshake); a close the server
   * does not answer within 2 s is forced.
   */
  stop(): Promise<void> {
    this.stopped = true;
    for (const w of this.waiters.values()) w(undefined);
    this.waiters.clear();
    const ws = this.ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const force = setTimeout(() => ws.terminate(), 2000);
      ws.once('close', () => {
        clearTimeout(force);
        resolve();
      });
      ws.close();
    });
  }
}

/**
 * Keyed commands in sequence: command `seq` is resent with its key until it is answered `ok`, then
 * the next one. Refusals a client retries (`unavailable`, `overloaded`) are counted; any other
 * refusal is recorded in `unexpected` for the test to assert on.
 */
export class CommandWorker {
  readonly sock: RoamingSocket;
  readonly acked = new Map<string, string>();
  retries = 0;
  duplicates = 0;
  readonly unexpected: string[] = [];
  private seq = 0;
  private running?: Promise<void>;

  constructor(readonly name: string, urls: () => string[], token: string) {
    this.sock = new RoamingSocket(name, urls, token);
  }

  start(): void {
    this.running = this.loop();
  }

  private async loop(): Promise<void> {
    while (!this.sock.stopped) {
      const key = `${this.name}-${this.seq}`;
      const answer = await this.sock.request(key, { op: 'cmd', type: 'device.reboot', topic: 'devices/d1/commands', data: { reason: `n${this.seq}` }, key });
      if (answer?.op === 'ok') {
        this.acked.set(key, answer.eventId!);
        if (answer.duplicate) this.duplicates++;
        this.seq++;
        continue;
      }
      if (answer && answer.code !== 'unavailable' && answer.code !== 'overloaded') this.unexpected.push(`${key}: ${JSON.stringify(answer)}`);
      this.retries++;
      await pause(50); // a client's backoff, then the same key again
    }
  }

  async stop(): Promise<void> {
    const closed = this.sock.stop();
    await this.running;
    await closed;
  }
}

/**
 * Publishes `{seq}` on `topic` with rising sequence numbers; an unanswered or refused one is
 * resent with the same number (so a subscriber may see a number twice, never miss an acked one).
 */
export class RoamingPublisher {
  readonly sock: RoamingSocket;
  /** Acked sequence numbers with the time (client clock) each was last sent. */
  readonly acked: { seq: number; sentAt: number }[] = [];
  private seq = 0;
  private running?: Promise<void>;

  constructor(readonly name: string, urls: () => string[], token: string, readonly topic: string) {
    this.sock = new RoamingSocket(name, urls, token);
  }

  start(): void {
    this.running = (async () => {
      while (!this.sock.stopped) {
        const sentAt = Date.now();
        const a = await this.sock.request(`p${this.seq}`, { op: 'pub', topic: this.topic, data: { seq: this.seq } });
        if (a?.op === 'ok') this.acked.push({ seq: this.seq++, sentAt });
        else await pause(50);
        await pause(5);
      }
    })();
  }

  async stop(): Promise<void> {
    const closed = this.sock.stop();
    await this.running;
    await closed;
  }
}

/** Command events of `org` by scoped idempotency key (read as the projector role: RLS lets the test see them only this way). */
export async function commandEventsByKey(pool: pg.Pool, org: string): Promise<{ byKey: Map<string, string>; rows: number }> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN; SET LOCAL ROLE orghub_projector');
    const rows = (await c.query(`SELECT idempotency_key, event_id::text FROM events WHERE org_id = $1 AND stream_id LIKE 'commands:%'`, [org])).rows as { idempotency_key: string; event_id: string }[];
    return { byKey: new Map(rows.map((r) => [r.idempotency_key, r.event_id])), rows: rows.length };
  } finally {
    await c.query('ROLLBACK');
    c.release();
  }
}

/** Every key a worker saw acked is in the store exactly once, under the event id its ack named. */
export async function assertAckedRecorded(pool: pg.Pool, org: string, workers: CommandWorker[]): Promise<string[]> {
  const { byKey, rows } = await commandEventsByKey(pool, org);
  const problems: string[] = [];
  if (byKey.size !== rows) problems.push(`${rows - byKey.size} keys recorded twice`);
  for (const w of workers) {
    for (const [key, eventId] of w.acked) {
      const got = byKey.get(scopedKey(w.name, key));
      if (got !== eventId) problems.push(`${key}: acked as ${eventId}, stored as ${got ?? 'nothing'}`);
    }
  }
  return problems;
}
