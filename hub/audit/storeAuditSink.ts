import { ANY, type EventStore, type NewEvent } from '../eventstore/eventStore.ts';
import type { Logger } from '../log.ts';
import type { AuditMeta, AuditSink, AuditType } from './audit.ts';

/** Org under which refusals that happened before any token was verified are recorded. */
export const UNAUTHENTICATED_ORG = '_unauthenticated';
/** Each org's audit events live in one stream. */
export const AUDIT_STREAM = 'audit';

interface Pending {
  org: string;
  event: NewEvent;
}

export interface StoreAuditOptions {
  store: EventStore;
  log: Logger;
  nodeId: string;
  /** Most events held while the store is unreachable; past it, events are counted and dropped. */
  maxBuffer: number;
  /** How often the buffer is written, ms. */
  flushMs?: number;
}

/**
 * Audit events are appended off the message path: `record` only pushes to a bounded buffer, and a
 * background loop appends them in batches (one append per org per flush). If the store is down the
 * buffer holds them and the loop retries with backoff; `/ready` and the logs show the backlog. An
 * event dropped past the bound is counted and logged, never dropped silently.
 */
export function createStoreAuditSink(opts: StoreAuditOptions): AuditSink & { flushNow(): Promise<void> } {
  const { store, log, nodeId, maxBuffer } = opts;
  const flushMs = opts.flushMs ?? 50;
  let buffer: Pending[] = [];
  /** Events taken from the buffer by the flush in progress: still backlog until the append succeeds. */
  let flushing = 0;
  let dropped = 0;
  let lastDropLog = 0;
  let failing = false;
  let backoff = flushMs;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let inflight: Promise<void> = Promise.resolve();

  const schedule = (ms: number) => {
    if (timer || closed) return;
    timer = setTimeout(() => {
      timer = undefined;
      inflight = flush();
    }, ms);
    timer.unref();
  };

  const flush = async (): Promise<void> => {
    if (buffer.length === 0) return;
    const batch = buffer;
    buffer = [];
    flushing = batch.length;
    const byOrg = new Map<string, NewEvent[]>();
    for (const p of batch) {
      let list = byOrg.get(p.org);
      if (!list) byOrg.set(p.org, (list = []));
      list.push(p.event);
    }
    const failed: Pending[] = [];
    await Promise.all(
      [...byOrg].map(async ([org, events]) => {
        try {
          await store.appendToStream(org, AUDIT_STREAM, events, { expectedVersion: ANY });
        } catch (err) {
          for (const event of events) failed.push({ org, event });
          if (!failing) log.warn({ err: (err as Error).message, backlog: batch.length }, 'audit events not yet recorded; the event store is unreachable, retrying');
          failing = true;
        }
      }),
    );
    flushing = 0;
    if (failed.length) {
      // Failed events go back in front, in order; the bound still applies.
      buffer = failed.concat(buffer);
      trim();
      backoff = Math.min(backoff * 2, 2000);
      schedule(backoff);
      return;
    }
    if (failing) log.info('audit events are being recorded again');
    failing = false;
    backoff = flushMs;
    if (buffer.length) schedule(flushMs);
  };

  const trim = () => {
    const over = buffer.length - maxBuffer;
    if (over <= 0) return;
    buffer.splice(maxBuffer, over);
    dropped += over;
    const now = Date.now();
    if (now - lastDropLog > 5000) {
      lastDropLog = now;
      log.error({ dropped, maxBuffer }, 'audit buffer full: audit events dropped (ORGHUB_AUDIT_BUFFER)');
    }
  };

  return {
    record(org: string | undefined, type: AuditType, data: Record<string, unknown>, meta: AuditMeta = {}) {
      if (closed) return;
      buffer.push({
        org: org ?? UNAUTHENTICATED_ORG,
        event: { type: `audit.${type}`, data, metadata: { actor: meta.actor ?? 'anonymous', session: meta.session, node: nodeId, correlationId: meta.correlationId } },
      });
      trim();
      schedule(failing ? backoff : flushMs);
    },
    stats: () => ({ backlog: buffer.length + flushing, dropped }),
    async flushNow() {
      await inflight;
      if (timer) {
        clearTimeout(timer);
        timer = undefined;
      }
      inflight = flush();
      await inflight;
    },
    async close() {
      if (timer) clearTimeout(timer);
      timer = undefined;
      await inflight;
      // One last attempt, bounded so shutdown never hangs on a dead store.
      await Promise.race([flush(), new Promise((r) => setTimeout(r, 2000).unref())]);
      closed = true;
      if (buffer.length) log.error({ lost: buffer.length }, 'audit events not recorded at shutdown');
    },
  };
}
