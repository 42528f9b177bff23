import type WebSocket from 'ws';

/**
 * What the generator needs to know about one wire protocol: how to connect, how to subscribe and
 * publish, and how to count deliveries in a received WebSocket message. Counting must stay cheap
 * (the generator shares 2 cores with the server); only sampled clients parse frames fully.
 */
export interface WireProtocol {
  readonly name: string;
  /** True if frames go out as binary. */
  readonly binary: boolean;
  /** URL for client `i`; `token` is set when the target authenticates. */
  url(base: string, token?: string): string;
  /** WebSocket subprotocols to offer, if any. */
  readonly subprotocols?: string[];
  /** Extra upgrade headers (e.g. Authorization). */
  headers?(token?: string): Record<string, string>;
  /**
   * Runs after `open`: sends the protocol's hello (if any) and subscribes to `topic` (unless
   * undefined). Resolves when the server has confirmed. `next` yields the next control frame.
   */
  handshake(ws: WebSocket, next: () => Promise<Buffer>, topic: string | undefined): Promise<void>;
  /** One publish frame carrying `payload` (a string of ASCII characters). */
  publishFrame(topic: string, payload: string): string | Buffer;
  /**
   * A stateful counter for one connection: returns how many deliveries `data` holds, or -1 for a
   * protocol keep-alive that is neither a delivery nor worth reporting.
   */
  makeCounter(ws: WebSocket): (data: Buffer) => number;
  /** Full parse for sampled connections: calls `onPayload` with every delivered payload string. */
  makeParser(ws: WebSocket): (data: Buffer, onPayload: (payload: string) => void) => number;
  /** True if the server speaks first (NATS INFO): connects are then counted at that frame. */
  readonly serverSpeaksFirst: boolean;
}

/** Counts non-overlapping occurrences of `needle` in `buf`. */
export function countOccurrences(buf: Buffer, needle: Buffer): number {
  let n = 0;
  let i = buf.indexOf(needle);
  while (i !== -1) {
    n++;
    i = buf.indexOf(needle, i + needle.length);
  }
  return n;
}

/** Waits for the next frame satisfying `pred`, bounded by `timeoutMs`. */
export async function expectFrame(next: () => Promise<Buffer>, pred: (s: string) => boolean, what: string, timeoutMs = 15_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 100; i++) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    let timer: NodeJS.Timeout | undefined;
    const frame = await Promise.race([
      next(),
      new Promise<never>((_, rej) => { timer = setTimeout(() => rej(new Error(`timeout waiting for ${what}`)), left); }),
    ]).finally(() => clearTimeout(timer));
    const s = frame.toString();
    if (pred(s)) return s;
  }
  throw new Error(`no ${what} within ${timeoutMs} ms`);
}
