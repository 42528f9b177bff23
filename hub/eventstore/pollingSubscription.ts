import type { Position, ReadAllBatch, RecordedEvent, Subscription } from './eventStore.ts';

/**
 * Catch-up-then-follow subscription over a `readAll`-style reader: reads a batch, hands it to the
 * handler, advances only after the handler succeeds (at-least-once), and when caught up waits for a
 * wakeup (LISTEN/NOTIFY) or `pollMs`, whichever comes first.
 */
export interface PollingSubscriptionOptions {
  start: () => Promise<Position>;
  read: (after: Position) => Promise<ReadAllBatch>;
  /** Registers a wakeup callback; returns its unregister function. */
  onWake?: (wake: () => void) => () => void;
  handler: (events: RecordedEvent[], ctx: { position: Position }) => Promise<void> | void;
  onError?: (err: unknown) => void;
  pollMs: number;
  /** Delay before retrying after a read or handler error. */
  retryMs?: number;
}

export function pollingSubscription(opts: PollingSubscriptionOptions): Subscription {
  let stopped = false;
  let woken = false;
  let fastPolls = 0;
  let sleeper: { timer: NodeJS.Timeout; resolve: () => void } | undefined;
  const retryMs = opts.retryMs ?? 250;
  const report = opts.onError ?? (() => {});

  function wake(): void {
    // A commit is announced before older transactions below it may have finished: poll a few
    // times quickly so the wakeup is not wasted on a not-yet-visible row.
    fastPolls = 3;
    if (sleeper) {
      clearTimeout(sleeper.timer);
      const s = sleeper;
      sleeper = undefined;
      s.resolve();
    } else {
      woken = true; // arrived while reading: do not sleep after this read
    }
  }

  function sleep(ms: number): Promise<void> {
    if (stopped) return Promise.resolve();
    if (woken) {
      woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        sleeper = undefined;
        resolve();
      }, ms);
      sleeper = { timer, resolve };
    });
  }

  const unregister = opts.onWake?.(wake) ?? (() => {});
  let resolveReady!: () => void;
  const ready = new Promise<void>((r) => (resolveReady = r));

  const loop = (async () => {
    let pos: Position | undefined;
    while (!stopped && pos === undefined) {
      try {
        pos = await opts.start();
      } catch (err) {
        report(err);
        await sleep(retryMs);
      }
    }
    resolveReady();
    while (!stopped && pos) {
      let batch: ReadAllBatch;
      try {
        woken = false;
        batch = await opts.read(pos);
      } catch (err) {
        report(err);
        await sleep(retryMs);
        continue;
      }
      if (stopped) break;
      if (batch.events.length > 0) {
        try {
          await opts.handler(batch.events, { position: batch.next });
        } catch (err) {
          report(err);
          await sleep(retryMs);
          continue;
        }
      }
      pos = batch.next;
      if (!batch.caughtUp) continue;
      if (batch.events.length === 0 && fastPolls > 0) {
        fastPolls--;
        await sleep(5);
      } else {
        await sleep(opts.pollMs);
      }
    }
  })();

  return {
    ready,
    async stop() {
      stopped = true;
      unregister();
      wake();
      resolveReady();
      await loop;
    },
  };
}
