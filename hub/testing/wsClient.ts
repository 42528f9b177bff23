import WebSocket from 'ws';
import { Packr } from 'msgpackr';

const packr = new Packr({ useRecords: false, mapsAsObjects: true });

export type Frame = Record<string, any>;

/**
 * A real WebSocket client for tests (the `ws` package). Collects every frame (arrays are
 * flattened, as the protocol allows coalescing) and answers `request` by id.
 */
export class TestClient {
  readonly frames: Frame[] = [];
  private nextId = 1;
  private waiters: { pred: (f: Frame) => boolean; resolve: (f: Frame) => void }[] = [];
  closeCode?: number;
  closeReason?: string;
  readonly closed: Promise<number>;

  private constructor(readonly ws: WebSocket, readonly enc: 'json' | 'msgpack') {
    this.closed = new Promise((resolve) =>
      ws.on('close', (code, reason) => {
        this.closeCode = code;
        this.closeReason = reason.toString();
        resolve(code);
      }),
    );
    ws.on('message', (data: Buffer, isBinary) => {
      const v = isBinary ? packr.unpack(data) : JSON.parse(data.toString());
      for (const f of Array.isArray(v) ? v : [v]) {
        this.frames.push(f);
        this.waiters = this.waiters.filter((w) => (w.pred(f) ? (w.resolve(f), false) : true));
      }
    });
  }

  static connect(url: string, token: string | undefined, opts: { enc?: 'json' | 'msgpack'; via?: 'header' | 'query'; protocols?: string[] } = {}): Promise<TestClient> {
    const enc = opts.enc ?? 'json';
    const u = token && opts.via === 'query' ? `${url}?access_token=${encodeURIComponent(token)}` : url;
    const headers = token && opts.via !== 'query' ? { authorization: `Bearer ${token}` } : undefined;
    const ws = new WebSocket(u, opts.protocols ?? [`orghub.v1.${enc}`], { headers, perMessageDeflate: false });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new TestClient(ws, enc)));
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => reject(Object.assign(new Error(`upgrade refused: ${res.statusCode} ${body}`), { status: res.statusCode, body })));
      });
      ws.once('error', reject);
    });
  }

  send(frame: unknown): void {
    this.ws.send(this.enc === 'json' ? JSON.stringify(frame) : packr.pack(frame));
  }

  sendRaw(data: string | Buffer, binary = typeof data !== 'string'): void {
    this.ws.send(data, { binary });
  }

  /** Sends a frame with a fresh id and resolves with the `ok`/`err` that answers it. */
  request(frame: Frame, timeoutMs = 5000): Promise<Frame> {
    const id = this.nextId++;
    const p = this.waitFor((f) => (f.op === 'ok' || f.op === 'err') && f.id === id, timeoutMs);
    this.send({ ...frame, id });
    return p;
  }

  waitFor(pred: (f: Frame) => boolean, timeoutMs = 5000): Promise<Frame> {
    const found = this.frames.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve: (f: Frame) => (clearTimeout(t), resolve(f)) };
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`timed out waiting for a frame; got ${JSON.stringify(this.frames.slice(-5))}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  /**
   * A barrier instead of a fixed sleep: one ping round trip. Every frame the hub queued for this
   * connection before it answered is read before the pong (one TCP stream, in order). Use it after
   * a marker that was published after the traffic under test has arrived: anything routed before
   * the marker is then in `frames`.
   */
  async settle(timeoutMs = 5000): Promise<void> {
    const id = `settle-${this.nextId++}`;
    const p = this.waitFor((f) => f.op === 'pong' && f.id === id, timeoutMs);
    this.send({ op: 'ping', id });
    await p;
  }

  messages(topic?: string): Frame[] {
    return this.frames.filter((f) => f.op === 'msg' && (topic === undefined || f.topic === topic));
  }

  close(): Promise<number> {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close();
    return this.closed;
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Data of the markers `barrierAcross` publishes (filter them out of what a test asserts on). */
export const isBarrier = (f: Frame): boolean => typeof f.data === 'string' && f.data.startsWith('barrier-');

/**
 * A cross-node barrier instead of a fixed sleep: publishes a marker on `topic` through each hub's
 * HTTP API (`POST /v1/publish`, `token` must be allowed to) and waits until `client`, subscribed
 * to `topic`, received every marker. Each hub publishes to NATS over one connection and NATS
 * delivers in order, so whatever a hub published before its marker on a topic `client` holds is
 * in `client.frames` once this resolves.
 */
export async function barrierAcross(client: TestClient, hubUrls: string[], token: string, topic: string, timeoutMs = 5000): Promise<void> {
  const markers = hubUrls.map((_, i) => `barrier-${i}-${Math.random().toString(36).slice(2)}`);
  await Promise.all(
    hubUrls.map(async (url, i) => {
      const r = await fetch(`${url}/v1/publish`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ topic, data: markers[i] }) });
      if (r.status !== 200) throw new Error(`barrier publish through ${url}: ${r.status} ${await r.text()}`);
    }),
  );
  await Promise.all(markers.map((m) => client.waitFor((f) => f.op === 'msg' && f.data === m, timeoutMs)));
}
