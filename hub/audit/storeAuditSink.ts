import { ANY, type EventStore, type NewEvent } from '../eventstore/eventStore.ts';
import { HubError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { sanitizeAuditData, sanitizeUntrusted } from '../core/text.ts';
import type { AuditMeta, AuditSink, AuditStats, AuditType } from './audit.ts';
import { DropCounter } from './dropCounter.ts';

/** Org under which refusals that happened before any token was verified are recorded. */
export const UNAUTHENTICATED_ORG = '_unauthenticated';

/** Each org's audit events live in one stream. */
export const AUDIT_STREAM = 'audit';

export interface StoreAuditOptions {
  store: EventStore;
  log: Logger;
  nodeId: string;
  /** Most events held while the store is unreachable; past it, events are counted and dropped. */
  maxBuffer: number;
  /** Most events one org (or `_unauthenticated`) may hold; default a quarter of maxBuffer. */
  maxPerOrg?: number;
  /** How often the buffer is written, ms. */
  flushMs?: number;
}

/** True for a rejection the same events will always get (a retry cannot help). */
function isPermanent(err: unknown): boolean {
  return err instanceof HubError && err.code === 'invalid';
}

/**
 * Audit events are appended off the message path: `record` only pushes to a bounded buffer, and a
 * background loop appends them in batches (one append per org per flush). If the store is down the
 * buffer holds them and the loop retries with backoff; `/ready` and the logs show the backlog. An
 * event dropped past the bound is counted (per org) and logged, never dropped silently.
 *
 * Tenant safety (issue 9): every value is sanitised here, in one place, so a hostile client id or
 * user agent cannot make an event unrecordable; each org has its own quota of the buffer, so no
 * single source (a flood of refused connections under `_unauthenticated`) can crowd another org's
 * events out; and an append the store rejects as invalid is bisected down to the event at fault,
 * which alone is dead-lettered (logged at error level and counted). Only transient failures are
 * retried.
 */
export function createStoreAuditSink(opts: StoreAuditOptions): AuditSink & { flushNow(): Promise<void> } {
  const { store, log, nodeId, maxBuffer } = opts;
  const maxPerOrg = Math.max(1, Math.min(maxBuffer, opts.maxPerOrg || Math.ceil(maxBuffer / 4)));
  const flushMs = opts.flushMs ?? 50;
  let buffers = new Map<string, NewEvent[]>();
  let buffered = 0;
  /** Events taken from the buffer by the flush in progress: still backlog until the append succeeds. */
  let flushing = 0;
  const drops = new DropCounter([UNAUTHENTICATED_ORG]);
  let deadLettered = 0;
  let lastDropLog = 0;
  let failing = false;
  let backoff = flushMs;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  /** The flush running or last run. Flushes run one after another, so an org's events are appended in the order recorded. */
  let inflight: Promise<void> = Promise.resolve();
  const flushNext = (): Promise<void> =>
    (inflight = inflight.then(flush).catch((err: unknown) => {
      log.error({ err: (err as Error).message }, 'audit flush failed unexpectedly');
    }));

  const schedule = (ms: number) => {
    if (timer || closed) return;
    timer = setTimeout(() => {
      timer = undefined;
      void flushNext();
    }, ms);
    timer.unref();
  };

  const drop = (org: string, n = 1) => {
    drops.add(org, n);
    const now = Date.now();
    if (now - lastDropLog > 5000) {
      lastDropLog = now;
      log.error({ dropped: drops.total, org, maxBuffer, maxPerOrg }, 'audit buffer full: audit events dropped (ORGHUB_AUDIT_BUFFER, ORGHUB_AUDIT_ORG_BUFFER)');
    }
  };

  /** Appends one org's events; a permanent rejection is narrowed down by halves to the events at fault. */
  const append = async (org: string, events: NewEvent[]): Promise<NewEvent[]> => {
    try {
      await store.appendToStream(org, AUDIT_STREAM, events, { expectedVersion: ANY });
      return [];
    } catch (err) {
      if (!isPermanent(err)) {
        if (!failing) log.warn({ err: (err as Error).message, backlog: buffered + flushing }, 'audit events not yet recorded; the event store is unreachable, retrying');
        failing = true;
        return events;
      }
      if (events.length === 1) {
        deadLettered++;
        log.error({ org, event: JSON.stringify(events[0]).slice(0, 2000), err: (err as Error).message }, 'audit event rejected by the event store: dead-lettered, not retried');
        return [];
      }
      const mid = events.length >> 1;
      const left = await append(org, events.slice(0, mid));
      const right = await append(org, events.slice(mid));
      return left.concat(right);
    }
  };

  const flush = async (): Promise<void> => {
    if (buffered === 0) return;
    const batch = buffers;
    buffers = new Map();
    flushing = buffered;
    buffered = 0;
    const failed = new Map<string, NewEvent[]>();
    await Promise.all(
      [...batch].map(async ([org, events]) => {
        const again = await append(org, events);
        if (again.length) failed.set(org, again);
      }),
    );
    flushing = 0;
    if (failed.size) {
      // Failed events go back in front of their org's queue, in order; the quotas still apply.
      for (const [org, events] of failed) {
        const queue = events.concat(buffers.get(org) ?? []);
        const over = queue.length - maxPerOrg;
        if (over > 0) {
          queue.splice(maxPerOrg, over);
          drop(org, over);
        }
        buffered += queue.length - (buffers.get(org)?.length ?? 0);
        buffers.set(org, queue);
      }
      trimTotal();
      backoff = Math.min(backoff * 2, 2000);
      schedule(backoff);
      return;
    }
    if (failing) log.info('audit events are being recorded again');
    failing = false;
    backoff = flushMs;
    if (buffered) schedule(flushMs);
  };

  /** The org holding the most events (the one that loses an event when the whole buffer is full). */
  const largest = (): string | undefined => {
    let best: string | undefined;
    let n = -1;
    for (const [org, q] of buffers) if (q.length > n) (best = org), (n = q.length);
    return best;
  };

  const trimTotal = () => {
    while (buffered > maxBuffer) {
      const org = largest()!;
      buffers.get(org)!.pop();
      buffered--;
      drop(org);
    }
  };

  return {
    record(org: string | undefined, type: AuditType, data: Record<string, unknown>, meta: AuditMeta = {}) {
      if (closed) return;
      const key = org ?? UNAUTHENTICATED_ORG;
      let queue = buffers.get(key);
      if ((queue?.length ?? 0) >= maxPerOrg) return drop(key);
      if (buffered >= maxBuffer) {
        // Full: the biggest holder makes room, unless that is this org (then this event is dropped).
        const big = largest()!;
        if (big === key || buffers.get(big)!.length <= (queue?.length ?? 0) + 1) return drop(key);
        buffers.get(big)!.pop();
        buffered--;
        drop(big);
      }
      const event: NewEvent = {
        type: `audit.${type}`,
        data: sanitizeAuditData(data),
        metadata: {
          actor: sanitizeUntrusted(meta.actor ?? 'anonymous', 256) || 'anonymous',
          session: sanitizeUntrusted(meta.session, 256),
          node: nodeId,
          correlationId: sanitizeUntrusted(meta.correlationId ?? meta.session, 256),
        },
      };
      if (!queue) buffers.set(key, (queue = []));
      queue.push(event);
      buffered++;
      schedule(failing ? backoff : flushMs);
    },
    stats: (): AuditStats => ({ backlog: buffered + flushing, dropped: drops.total, droppedByOrg: drops.byLabel(), deadLettered }),
    async flushNow() {
      if (timer) {
        clearTimeout(timer);
        timer = undefined;
      }
      await flushNext();
    },
    async close() {
      if (timer) clearTimeout(timer);
      timer = undefined;
      await inflight;
      // One last attempt, bounded so shutdown never hangs on a dead store.
      await Promise.race([flush(), new Promise((r) => setTimeout(r, 2000).unref())]);
      closed = true;
      if (buffered) log.error({ lost: buffered }, 'audit events not recorded at shutdown');
    },
  };
}
