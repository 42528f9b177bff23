/** Audit event types, recorded for every tenant-visible security decision (docs/operations.md). */
export type AuditType =
  | 'session.connected'
  | 'session.rejected'
  | 'session.disconnected'
  | 'session.refreshed'
  | 'session.refresh_rejected'
  | 'subscribe.denied'
  | 'publish.denied'
  | 'command.denied'
  | 'limit.hit'
  | 'session.protocol_violation'
  | 'mqtt.will_published'
  | 'admin.action'
  | 'admin.denied'
  | 'fleet.issued'
  | 'fleet.delivered'
  | 'fleet.acked'
  | 'fleet.ack_refused'
  | 'fleet.expired'
  | 'fleet.cancelled';

export interface AuditMeta {
  actor?: string;
  session?: string;
  correlationId?: string;
}

/**
 * Where audit events go. `record` never blocks and never throws: it is called from the message
 * path. An org of `undefined` is used for rejections that happened before an org was known.
 */
export interface AuditSink {
  record(org: string | undefined, type: AuditType, data: Record<string, unknown>, meta?: AuditMeta): void;
  /** Events waiting for the store, and events dropped past the bound since start. */
  stats(): AuditStats;
  close(): Promise<void>;
}

export interface AuditStats {
  /** Events waiting for the store. */
  backlog: number;
  /** Events dropped past the buffer bounds since start. */
  dropped: number;
  /** `dropped` per org (bounded labels: the first 20 orgs and `_unauthenticated`, the rest as `other`). */
  droppedByOrg?: Record<string, number>;
  /** Events the store rejected for good (invalid data): logged at error level, not retried. */
  deadLettered?: number;
}
