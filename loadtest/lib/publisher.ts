import { once } from 'node:events';
import { setImmediate as yieldTurn, setTimeout as sleep } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import type WebSocket from 'ws';
import { makePayload } from './clients.ts';
import type { WireProtocol } from './protocol.ts';

export interface PublishOptions {
  proto: WireProtocol;
  ws: WebSocket;
  topic: string;
  count: number;
  size: number;
  /** Tag written into each payload (e.g. the run number). */
  tag: string;
  /** Fixed rate in messages/s; 0 = as fast as the socket drains. */
  rate?: number;
  /** Above this many buffered bytes, wait for the socket to drain. */
  highWater?: number;
  /**
   * Yield to the event loop after this many sends (as-fast-as-possible mode); 0 = never, which is
   * the BASELINES.md method. Yielding makes the publisher trickle, and then servers that batch per
   * event-loop turn (uWS's publish) degrade to one send() per message per subscriber.
   */
  batch?: number;
  /** Gives up after this long. */
  timeoutMs?: number;
}

export interface PublishResult {
  sent: number;
  firstAt: number;
  lastAt: number;
}

/**
 * Sends `count` messages, each stamped with performance.now() at send time (one clock with the
 * receivers, since they run in this process). In as-fast-as-possible mode it sends until
 * `ws.bufferedAmount` passes the high-water mark, then waits for the socket's `drain`.
 */
export async function publish(o: PublishOptions): Promise<PublishResult> {
  const high = o.highWater ?? 256 * 1024;
  const batch = o.batch ?? 0;
  const deadline = Date.now() + (o.timeoutMs ?? 120_000);
  const sock = (o.ws as unknown as { _socket: import('node:net').Socket })._socket;
  const opts = { binary: o.proto.binary };
  let sent = 0;
  const firstAt = performance.now();
  const sendOne = (): void => {
    o.ws.send(o.proto.publishFrame(o.topic, makePayload(o.size, `${o.tag}|${sent}`)), opts);
    sent++;
  };
  if (!o.rate) {
    while (sent < o.count) {
      if (Date.now() > deadline) throw new Error(`publish timed out after ${sent} messages`);
      sendOne();
      if (o.ws.bufferedAmount > high) {
        await Promise.race([once(sock, 'drain'), sleep(1000)]);
      } else if (batch && sent % batch === 0) {
        await yieldTurn();
      }
    }
  } else {
    // Fixed rate: catch up to the schedule every millisecond-ish timer tick.
    while (sent < o.count) {
      if (Date.now() > deadline) throw new Error(`publish timed out after ${sent} messages`);
      const due = Math.min(o.count, Math.floor(((performance.now() - firstAt) * o.rate) / 1000) + 1);
      while (sent < due) sendOne();
      await sleep(1);
    }
  }
  return { sent, firstAt, lastAt: performance.now() };
}
