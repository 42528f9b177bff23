import type { ContentType } from '../bus/bus.ts';

/** One retained message: the exact payload bytes and what is needed to redeliver them. */
export interface RetainedMessage {
  topic: string;
  payload: Buffer;
  contentType: ContentType;
  /** QoS it was published with (0 or 1; QoS 2 is stored as 1, the most the bridge delivers). */
  qos: 0 | 1;
  from?: string;
  ts: number;
}

/**
 * Retained messages per org, shared by every hub node (so not in process memory). Topics are
 * org-relative and valid; the org comes from the verified token only.
 */
export interface RetainedStore {
  /** Stores (or, for an empty payload, deletes) the retained message of `topic`. Rejects when the store is down. */
  set(org: string, msg: RetainedMessage): Promise<void>;
  /** Every retained message of the org whose topic matches `pattern` (hub semantics, `$` rule included). */
  match(org: string, pattern: string): Promise<RetainedMessage[]>;
  /** Readiness: true once the store answers. */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}
