/**
 * History and resume (docs/history.md), Centrifugo's model: each topic of a namespace configured
 * with history (ORGHUB_HISTORY_NAMESPACES) is a stream with an offset (1, 2, 3, ... per message)
 * and an epoch (a random id of the stream's current life). The store keeps the last N messages for
 * T (Redis adapter: `redisHistory.ts`, a Redis stream bounded with MAXLEN and a TTL). When the
 * stream expires and starts again its epoch changes, so an old position can never be mistaken
 * for a new one.
 */
import type { ContentType } from '../bus/bus.ts';

/** A place in one topic's stream. `offset` 0 means "before the first message". */
export interface StreamPosition {
  offset: number;
  epoch: string;
}

export interface HistoryMessage {
  offset: number;
  payload: Uint8Array;
  contentType: ContentType;
  from?: string;
  ts: number;
}

/** Retention of one namespace: the last `size` messages, for `ttlMs` after the last publish. */
export interface Retention {
  size: number;
  ttlMs: number;
}

export interface HistoryRead {
  /** Messages with offset > `after`, oldest first, at most `limit`. */
  messages: HistoryMessage[];
  /** The stream's newest position (offset 0 before the first message). */
  top: StreamPosition;
  /** Offset of the oldest message still kept (top.offset + 1 when none is). */
  earliest: number;
}

export interface HistoryStore {
  /** Appends one message and returns its position; offsets are assigned atomically across nodes. */
  append(org: string, topic: string, m: Omit<HistoryMessage, 'offset'>, r: Retention): Promise<StreamPosition>;
  /** Starts the stream's epoch (with retention `r`) when it has none yet. */
  read(org: string, topic: string, after: number, limit: number, r: Retention): Promise<HistoryRead>;
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * Parses ORGHUB_HISTORY_NAMESPACES: `ns=size:ttlSeconds` entries separated by commas, e.g.
 * `chat=100:300,feed=1000:3600`. Throws with the faulty entry.
 */
export function parseRetention(spec: string): Map<string, Retention> {
  const out = new Map<string, Retention>();
  for (const raw of spec.split(',')) {
    const item = raw.trim();
    if (!item) continue;
    const m = /^([A-Za-z0-9_\-~:=@]{1,64})=(\d{1,7}):(\d{1,7})$/.exec(item);
    if (!m || Number(m[2]) < 1 || Number(m[3]) < 1) throw new Error(`ORGHUB_HISTORY_NAMESPACES: "${item}" is not ns=size:ttlSeconds (size and ttl at least 1)`);
    out.set(m[1], { size: Number(m[2]), ttlMs: Number(m[3]) * 1000 });
  }
  return out;
}

/** The retention of a concrete topic, when its namespace (first segment) keeps history. */
export function retentionOf(topic: string, namespaces: ReadonlyMap<string, Retention>): Retention | undefined {
  if (namespaces.size === 0 || topic.includes('+') || topic.includes('#')) return undefined;
  return namespaces.get(topic.split('/', 1)[0]);
}

export interface RecoveryPlan {
  /** True when every message after `since` can be given: then they are read and sent before live ones. */
  recovered: boolean;
  /** How many messages were published after `since`, when that is known (same epoch). */
  missed?: number;
}

/**
 * Whether a resume from `since` can be complete, given the stream's top and its earliest kept
 * offset. A changed epoch, a position ahead of the top, or one older than retention cannot be.
 */
export function planRecovery(since: StreamPosition, top: StreamPosition, earliest: number): RecoveryPlan {
  if (since.epoch !== top.epoch) return { recovered: false };
  if (since.offset > top.offset) return { recovered: false };
  const missed = top.offset - since.offset;
  if (missed > 0 && since.offset + 1 < earliest) return { recovered: false, missed };
  return { recovered: true, missed };
}
