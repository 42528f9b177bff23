import type { WebSocket } from '@trufflesuite/uws-js-unofficial';
import { OrgTurns } from '../../core/orgTurns.ts';
import type { Conn } from './wsTypes.ts';

/**
 * The way in for WebSocket frames (issue 9): when each frame runs, and when a connection is not
 * read at all. docs/operations.md "Limits" and docs/protocol.md "Rate limits" describe it.
 *
 * - Fair turns (hub/core/orgTurns.ts): a frame runs inline while its org has used less than
 *   `budgetMs` of the loop turn; past that it is copied into its connection's queue and run in
 *   round-robin slices across orgs between turns (setImmediate), so another org's frames and
 *   database results are not stuck behind one org's burst. Once a connection has queued frames,
 *   its later frames queue too (order kept). `budgetMs` 0: every frame runs inline.
 * - Holds: after a rate-limit refusal the connection's frames are not run for its
 *   `retryAfterMs`: they wait in the queue, unparsed and unanswered, and run (and meet the limit
 *   again) once the hold ends. A client that ignores `retryAfterMs` costs one refusal per hold
 *   instead of one per frame, and a client that waits for answers (any client with a bounded
 *   number of requests in flight) stops sending while held.
 * - uWS 20.30 has no `pause()` for WebSocket (only for HTTP bodies), so the hub cannot leave
 *   frames in the kernel. A queue is bounded by `maxQueuedBytes` instead: past it, a connection
 *   that is only waiting for its turn runs its frames at once (fairness is given up for that
 *   excess, memory is not), and a held connection that keeps sending is `overflow`ed (the
 *   transport closes it for abuse, or runs its frames, refused one by one, when abuse closes are off).
 */
export interface InboundOptions {
  budgetMs: number;
  sliceMs: number;
  maxQueuedBytes: number;
  /** Decodes and handles one frame (the bytes are valid for the duration of the call only). */
  run(ws: WebSocket<Conn>, c: Conn, message: ArrayBuffer, isBinary: boolean): void;
  /** A held connection's queue passed `maxQueuedBytes`: true when the transport closed it. */
  overflow(ws: WebSocket<Conn>, c: Conn): boolean;
  /** A frame arrived while `c` is held: true when the transport closed it for abuse. */
  heldFrame(ws: WebSocket<Conn>, c: Conn): boolean;
}

export interface InboundStats {
  /** Frames that waited in a queue instead of running inline. */
  queued: number;
  /** Frames waiting now, and their bytes. */
  waiting: number;
  waitingBytes: number;
  /** Holds after a refusal (times a connection's frames waited for retryAfterMs). */
  holds: number;
  /** Times a connection's queue passed maxQueuedBytes. */
  overflows: number;
}

export interface Inbound {
  /** A frame from uWS's message callback. */
  receive(ws: WebSocket<Conn>, c: Conn, message: ArrayBuffer, isBinary: boolean): void;
  /**
   * Runs none of `ws`'s frames for `ms` after a refusal, or until `until` settles (a lease refill
   * the connection's last frame waits for, so later frames wait unparsed instead of piling up on
   * the same promise and running all at once); no-op while already held.
   */
  hold(ws: WebSocket<Conn>, c: Conn, until: number | Promise<unknown>): void;
  /** The connection closed: its waiting frames are dropped. */
  closed(c: Conn): void;
  readonly stats: InboundStats;
}

export function wsInbound(opts: InboundOptions): Inbound {
  const turns = new OrgTurns<WebSocket<Conn>>({ budgetMs: opts.budgetMs, sliceMs: opts.sliceMs });
  const on = opts.budgetMs > 0;
  const stats: InboundStats = { queued: 0, waiting: 0, waitingBytes: 0, holds: 0, overflows: 0 };
  let scheduled = false;

  const schedule = () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(tick);
  };

  const ready = (ws: WebSocket<Conn>, c: Conn) => {
    if (c.ready || c.held || c.closed || !c.inq) return;
    c.ready = true;
    turns.add(c.principal.org, ws);
    schedule();
  };

  /** Runs the next waiting frame of `c`; false when none ran (closed, held unless `force`, or empty). */
  const runNext = (ws: WebSocket<Conn>, c: Conn, force = false): boolean => {
    const q = c.inq;
    if (c.closed || (c.held && !force) || !q) return false;
    const f = q.frames.shift()!;
    q.bytes -= f.b.byteLength;
    stats.waiting--;
    stats.waitingBytes -= f.b.byteLength;
    if (q.frames.length === 0) c.inq = undefined;
    opts.run(ws, c, f.b, f.bin);
    return true;
  };

  const enqueue = (ws: WebSocket<Conn>, c: Conn, message: ArrayBuffer, isBinary: boolean) => {
    const q = (c.inq ??= { frames: [], bytes: 0 });
    q.frames.push({ b: message.slice(0), bin: isBinary });
    q.bytes += message.byteLength;
    stats.queued++;
    stats.waiting++;
    stats.waitingBytes += message.byteLength;
    if (q.bytes > opts.maxQueuedBytes) {
      stats.overflows++;
      if (c.held && opts.overflow(ws, c)) return;
      // Not held (or the transport keeps a held one open): run its frames now, in order; while
      // held, each meets the limit and is refused with the rest of the hold.
      while (runNext(ws, c, true));
      return;
    }
    ready(ws, c);
  };

  /** One drain slice between turns; every org's inline budget starts fresh afterwards. */
  const tick = () => {
    scheduled = false;
    const end = performance.now() + opts.sliceMs;
    while (turns.pending && performance.now() < end) {
      const { conn: ws } = turns.next()!;
      const c = ws.getUserData();
      c.ready = false;
      if (runNext(ws, c)) ready(ws, c);
    }
    turns.newTurn();
    if (turns.pending) schedule();
  };

  return {
    stats,
    receive(ws, c, message, isBinary) {
      if (c.held && opts.heldFrame(ws, c)) return;
      if (c.inq || c.held) return enqueue(ws, c, message, isBinary);
      if (!on) return opts.run(ws, c, message, isBinary);
      const org = c.principal.org;
      if (!turns.inline(org)) return enqueue(ws, c, message, isBinary);
      const t0 = performance.now();
      opts.run(ws, c, message, isBinary);
      turns.charge(org, performance.now() - t0);
      schedule();
    },
    hold(ws, c, until) {
      if (c.held || c.closed) return;
      c.held = true;
      const release = () => {
        c.held = false;
        ready(ws, c);
      };
      if (typeof until === 'number') {
        stats.holds++;
        // +1: a timer may fire up to a millisecond before performance.now() reaches the hold's end
        setTimeout(release, until + 1);
      } else until.then(release, release);
    },
    closed(c) {
      if (c.inq) {
        stats.waiting -= c.inq.frames.length;
        stats.waitingBytes -= c.inq.bytes;
        c.inq = undefined;
      }
    },
  };
}
