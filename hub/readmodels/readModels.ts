/**
 * The query side of the read models (docs/query-api.md): typed, org-scoped reads of the tables the
 * projector fills. Every call names the org, which comes only from a verified token; the adapter
 * sets it with `set_config('app.org_id', org, true)` inside the call's own transaction, as a role
 * that cannot bypass row-level security, so a bug here can show nothing of another org.
 *
 * Filters reach an adapter already validated (`filters.ts`) and are only ever bind parameters.
 */

/** The read models a principal may be granted (`read` in role grants); `*` grants all of them. */
export const READ_MODELS = ['audit', 'devices', 'sessions', 'commands'] as const;
export type ReadModelName = (typeof READ_MODELS)[number];

/** Largest page a caller may ask for; larger is a 400, not a silent clamp. */
export const MAX_LIMIT = 1000;
/** Page size when the caller gives no `limit`. */
export const DEFAULT_LIMIT = 100;

/** Timestamps are ISO 8601 in UTC with microseconds (`2026-11-30T12:00:00.123456Z`), as stored. */
export type Timestamp = string;

export interface AuditFilter {
  actor?: string;
  /** Prefix of the event type (`session.` matches `session.connected`); `%` and `_` match literally. */
  type?: string;
  topic?: string;
  outcome?: string;
  /** Inclusive lower bound on recorded_at. */
  from?: Timestamp;
  /** Exclusive upper bound on recorded_at. */
  to?: Timestamp;
  correlationId?: string;
  /** `desc` (newest first, the default) or `asc`. */
  order?: 'asc' | 'desc';
}

export interface DeviceFilter {
  online?: boolean;
  transport?: string;
  /** Devices whose last_seen is at or after this instant. */
  seenSince?: Timestamp;
}

export interface SessionFilter {
  device?: string;
  actor?: string;
  transport?: string;
  /** `open`: not yet disconnected; `closed`: disconnected. */
  state?: 'open' | 'closed';
  /** Bounds on connected_at: from inclusive, to exclusive. */
  from?: Timestamp;
  to?: Timestamp;
}

export interface CommandFilter {
  device?: string;
  type?: string;
  status?: string;
  /** Bounds on issued_at: from inclusive, to exclusive. */
  from?: Timestamp;
  to?: Timestamp;
}

/** The position after the last row of a page: the sort key and the id (keyset pagination). */
export interface Position {
  at: Timestamp;
  id: string;
}

export interface PageRequest {
  limit: number;
  /** Rows strictly after this position in the listing's order; undefined starts at the beginning. */
  after?: Position;
}

export interface Page<T> {
  items: T[];
  /** Where the next page starts; undefined when this page is the last. */
  next?: Position;
}

export interface AuditEntry {
  id: string;
  recordedAt: Timestamp;
  globalPosition: string;
  type: string;
  actor: string;
  session: string | null;
  topic: string | null;
  outcome: string;
  correlationId: string | null;
  node: string | null;
  data: unknown;
}

export interface Device {
  id: string;
  firstSeen: Timestamp;
  lastSeen: Timestamp;
  online: boolean;
  openSessions: number;
  currentSession: string | null;
  transport: string | null;
  clientId: string | null;
}

export interface Session {
  id: string;
  actor: string;
  deviceId: string | null;
  transport: string | null;
  clientId: string | null;
  node: string | null;
  connectedAt: Timestamp | null;
  disconnectedAt: Timestamp | null;
  durationMs: string | null;
  reason: string | null;
  closeCode: number | null;
}

export interface DeviceCommand {
  id: string;
  deviceId: string | null;
  topic: string;
  type: string;
  data: unknown;
  status: string;
  issuedBy: string;
  issuedAt: Timestamp;
  updatedAt: Timestamp;
  globalPosition: string;
  idempotencyKey: string | null;
  /** Fleet commands only (null for generic recorded commands). */
  expiresAt: Timestamp | null;
  fleetId: string | null;
  deliveredAt: Timestamp | null;
  details: string | null;
}

/** A bulk fleet command: how many of its commands are in each status (docs/fleet.md). */
export interface FleetSummary {
  fleetId: string;
  type: string;
  issuedBy: string;
  issuedAt: Timestamp;
  expiresAt: Timestamp;
  total: number;
  byStatus: Record<string, number>;
}

/**
 * Org-scoped reads. Every method rejects with HubError `unavailable` (database down, statement
 * timeout) or `internal`, never with database text.
 */
export interface ReadModels {
  audit(org: string, filter: AuditFilter, page: PageRequest): Promise<Page<AuditEntry>>;
  /**
   * Every audit entry matching `filter`, page by page of `pageSize`, each page read in its own short
   * transaction (no connection is held while the caller writes). `sink` returns a promise to pause
   * (backpressure) or `false` to stop early (the client went away). Here `data` is the entry's JSON
   * text, not a parsed value.
   */
  exportAudit(org: string, filter: AuditFilter, pageSize: number, sink: (rows: AuditEntry[]) => Promise<boolean> | boolean): Promise<number>;
  devices(org: string, filter: DeviceFilter, page: PageRequest): Promise<Page<Device>>;
  /** The device, or undefined when it does not exist in `org` (another org's id looks the same). */
  device(org: string, id: string): Promise<Device | undefined>;
  sessions(org: string, filter: SessionFilter, page: PageRequest): Promise<Page<Session>>;
  commands(org: string, filter: CommandFilter, page: PageRequest): Promise<Page<DeviceCommand>>;
  /** The summary of a bulk fleet command, or undefined when `org` has none with this id. */
  fleetSummary(org: string, fleetId: string): Promise<FleetSummary | undefined>;
  /** Ids of the org's devices (the selector `{"all": true}`), at most `max`, in id order. */
  deviceIds(org: string, max: number): Promise<string[]>;
  close(): Promise<void>;
}
