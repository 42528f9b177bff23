import WebSocket from 'ws';
import { performance } from 'node:perf_hooks';
import type { WireProtocol } from './protocol.ts';

/** Shared tallies across all clients of one bench, updated on the receive path. */
export interface Tally {
  delivered: number;
  /** performance.now() of the most recent delivery. */
  lastAt: number;
  /** Frames that held no delivery after the handshake (errors, acks): counted, first few kept. */
  other: number;
  otherSamples: string[];
  /** Latency samples in ms (publish timestamp to receipt), from sampled clients only. */
  latencies: number[];
  /** Connections closed by the server after they were ready. */
  dropped: number;
}

export function newTally(): Tally {
  return { delivered: 0, lastAt: 0, other: 0, otherSamples: [], latencies: [], dropped: 0 };
}

export function resetTally(t: Tally): void {
  t.delivered = 0;
  t.lastAt = 0;
  t.other = 0;
  t.otherSamples.length = 0;
  t.latencies.length = 0;
}

/** Extracts the publish timestamp from a bench payload (`T<ms>|...`); NaN if absent. */
export function payloadTimestamp(p: string): number {
  if (p.charCodeAt(0) !== 84 /* T */) return NaN;
  return Number(p.slice(1, p.indexOf('|')));
}

/** Builds a payload of exactly `size` ASCII bytes: `T<performance.now()>|<tag>|` padded with 'x'. */
export function makePayload(size: number, tag: string): string {
  const head = `T${performance.now().toFixed(3)}|${tag}|`;
  if (head.length > size) throw new Error(`payload size ${size} too small for header ${head}`);
  return head + 'x'.repeat(size - head.length);
}

export interface BenchClient {
  readonly ws: WebSocket;
  /** ms from connect start to open (or to the server's first frame, for server-speaks-first). */
  connectMs: number;
  /** performance.now() at which the connection counted as connected. */
  connectedAt: number;
  delivered: number;
  readonly sampled: boolean;
  close(): Promise<void>;
}

export interface ConnectOptions {
  proto: WireProtocol;
  baseUrl: string;
  token?: string;
  /** Topic to subscribe to in the handshake; undefined = none. */
  topic?: string;
  /** Parse every frame fully and record latency. */
  sampled?: boolean;
  tally: Tally;
  /** Source address to bind (spreads ephemeral ports over 127.0.0.x). */
  localAddress?: string;
  timeoutMs?: number;
}

/**
 * Opens one client, runs the protocol handshake, then switches to counting. Control frames are
 * queued during the handshake only; afterwards the receive path is the cheap counter.
 */
export async function connectClient(o: ConnectOptions): Promise<BenchClient> {
  const t0 = performance.now();
  const ws = new WebSocket(o.proto.url(o.baseUrl, o.token), o.proto.subprotocols, {
    perMessageDeflate: false,
    // Text frames (orghub JSON) would otherwise be UTF-8-validated on the generator's receive path,
    // a cost the binary NATS frames do not pay.
    skipUTF8Validation: true,
    maxPayload: 256 * 1024 * 1024,
    headers: o.proto.headers?.(o.token),
    handshakeTimeout: o.timeoutMs ?? 15_000,
    localAddress: o.localAddress,
  });
  const queue: Buffer[] = [];
  let waiter: ((b: Buffer) => void) | undefined;
  let failWaiter: ((e: Error) => void) | undefined;
  let ready = false;
  const tally = o.tally;
  const client: BenchClient = {
    ws,
    connectMs: 0,
    connectedAt: 0,
    delivered: 0,
    sampled: !!o.sampled,
    close: () =>
      new Promise<void>((resolve) => {
        if (ws.readyState === WebSocket.CLOSED) return resolve();
        const t = setTimeout(() => { ws.terminate(); resolve(); }, 2000);
        ws.once('close', () => { clearTimeout(t); resolve(); });
        if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
        else ws.close();
      }),
  };
  const counter = o.proto.makeCounter(ws);
  const parser = o.proto.makeParser(ws);
  const onPayload = (p: string): void => {
    const ts = payloadTimestamp(p);
    if (ts === ts) tally.latencies.push(performance.now() - ts);
  };
  const markConnected = (): void => {
    if (client.connectedAt) return;
    client.connectedAt = performance.now();
    client.connectMs = client.connectedAt - t0;
  };
  ws.on('message', (data: Buffer) => {
    if (!ready) {
      if (o.proto.serverSpeaksFirst) markConnected();
      if (waiter) { const w = waiter; waiter = undefined; w(data); } else queue.push(data);
      return;
    }
    const n = client.sampled ? parser(data, onPayload) : counter(data);
    if (n > 0) {
      client.delivered += n;
      tally.delivered += n;
      tally.lastAt = performance.now();
    } else if (n === 0) {
      tally.other++;
      if (tally.otherSamples.length < 5) tally.otherSamples.push(data.toString('latin1', 0, 200));
    }
  });
  const opened = new Promise<void>((resolve, reject) => {
    ws.once('open', () => { if (!o.proto.serverSpeaksFirst) markConnected(); resolve(); });
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => { if (body.length < 500) body += c.toString(); });
      res.on('end', () => reject(new Error(`upgrade refused: HTTP ${res.statusCode} ${body}`)));
    });
  });
  ws.on('close', (code, reason) => {
    if (ready) tally.dropped++;
    failWaiter?.(new Error(`closed ${code} ${reason.toString()}`));
  });
  ws.on('error', () => { /* surfaced through open/close */ });
  await opened;
  const next = (): Promise<Buffer> => {
    const b = queue.shift();
    if (b) return Promise.resolve(b);
    return new Promise<Buffer>((resolve, reject) => { waiter = resolve; failWaiter = reject; });
  };
  try {
    await o.proto.handshake(ws, next, o.topic);
  } catch (e) {
    ws.terminate();
    throw e;
  }
  failWaiter = undefined;
  ready = true;
  return client;
}

export interface OpenManyOptions extends Omit<ConnectOptions, 'token' | 'topic' | 'sampled' | 'localAddress'> {
  count: number;
  /** Connections in flight at once (a pool: a new one starts when one finishes). */
  concurrency: number;
  tokens?: string[];
  topicFor?: (i: number) => string | undefined;
  /** Clients 0..sampled-1 parse fully and record latency. */
  sampled?: number;
  /** Spread source addresses over 127.0.0.1..127.0.0.N. */
  sourceAddresses?: number;
  onProgress?: (done: number, failed: number) => void;
  /** Give up opening after this many failures. */
  maxFailures?: number;
}

export interface OpenManyResult {
  clients: BenchClient[];
  failed: number;
  firstError?: string;
  /** performance.now() when the first connect started and when the last one counted as connected. */
  startedAt: number;
  lastConnectedAt: number;
}

/** Opens `count` clients with bounded concurrency. Never throws for individual failures. */
export async function openMany(o: OpenManyOptions): Promise<OpenManyResult> {
  const clients: BenchClient[] = [];
  let failed = 0;
  let firstError: string | undefined;
  let nextIdx = 0;
  const startedAt = performance.now();
  const maxFailures = o.maxFailures ?? Math.max(10, Math.floor(o.count / 20));
  const worker = async (): Promise<void> => {
    while (nextIdx < o.count && failed < maxFailures) {
      const i = nextIdx++;
      try {
        const c = await connectClient({
          ...o,
          token: o.tokens?.[i],
          topic: o.topicFor?.(i),
          sampled: i < (o.sampled ?? 0),
          localAddress: o.sourceAddresses ? `127.0.0.${1 + (i % o.sourceAddresses)}` : undefined,
        });
        clients.push(c);
      } catch (e) {
        failed++;
        firstError ??= (e as Error).message;
      }
      o.onProgress?.(clients.length, failed);
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency, o.count) }, worker));
  let lastConnectedAt = 0;
  for (const c of clients) if (c.connectedAt > lastConnectedAt) lastConnectedAt = c.connectedAt;
  return { clients, failed, firstError, startedAt, lastConnectedAt };
}

/** Closes clients with bounded concurrency. */
export async function closeAll(clients: BenchClient[], concurrency = 500): Promise<void> {
  for (let i = 0; i < clients.length; i += concurrency) {
    await Promise.all(clients.slice(i, i + concurrency).map((c) => c.close()));
  }
}
