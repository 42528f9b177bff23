import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Open loop: calls `fire(i, scheduledAt)` for i = 0 … total-1 at `rate` calls/s, catching up with
 * the schedule after every timer tick (~1 ms). A late call is made late, never skipped, so latency
 * counted from `scheduledAt` charges a stall to every call it delays. Resolves, with the start
 * time (`performance.now()`), once every promise `fire` returned has settled.
 */
export async function openLoop(rate: number, total: number, fire: (i: number, scheduledAt: number) => Promise<unknown>): Promise<number> {
  const inflight: Promise<unknown>[] = [];
  const t0 = performance.now();
  let sent = 0;
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * rate));
    for (; sent < due; sent++) inflight.push(fire(sent, t0 + (sent * 1000) / rate));
    await sleep(1);
  }
  await Promise.allSettled(inflight);
  return t0;
}
