import type { DrainGate } from './drainGate.ts';
import type { RoleGrants } from '../acl/grants.ts';
import type { AuditSink } from '../audit/audit.ts';
import type { TokenVerifier } from '../auth/principal.ts';
import type { Bus } from '../bus/bus.ts';
import type { CommandHandler } from '../core/commands.ts';
import type { Publisher } from '../core/publisher.ts';
import type { FleetDelivery } from '../fleet/fleet.ts';
import type { PresenceTracker } from '../presence/tracker.ts';
import type { HistoryRecorder } from '../history/subscription.ts';
import type { Logger } from '../log.ts';
import type { LimitService } from '../limits/limitService.ts';
import type { SessionRegistry } from '../core/sessions.ts';
import type { MqttLimits } from './limits.ts';
import type { MqttFanout } from './mqttFanout.ts';
import type { FlushScheduler } from './outbound.ts';
import type { RetainedStore } from './retained.ts';
import type { SessionStore } from './sessionStore.ts';
import type { TakeoverRegistry } from './takeoverRegistry.ts';

/** What the keepalive and CONNECT-timeout sweep needs from a live connection. */
export interface SweptSession {
  readonly state: 'connecting' | 'authenticating' | 'open' | 'closed';
  readonly keepaliveMs: number;
  readonly lastSeen: number;
  readonly openedAt: number;
  disconnect(code: number, reason: string): void;
}

/** Persistent-session settings (docs/configuration.md). */
export interface SessionPolicy {
  /** MQTT 3.1.1 clean session 0: session expiry in seconds. */
  defaultExpiryS: number;
  /** Cap on an MQTT 5 client's Session Expiry Interval, in seconds. */
  maxExpiryS: number;
  /** Queued QoS 1 messages per offline session; past it the oldest is dropped and counted. */
  maxQueue: number;
  /** Persistent sessions per org. */
  maxSessions: number;
}

/** Node-local counters of persistent sessions (read by /metrics). */
export interface SessionStats {
  /** Messages appended to offline queues by this node. */
  queued: number;
  /** Messages dropped, by reason: `overflow` (queue full, oldest dropped), `expired` (Message Expiry passed), `unavailable` (Redis failed). */
  dropped: { overflow: number; expired: number; unavailable: number };
  /** Parked sessions this node adopted from a node that stopped beating. */
  adopted: number;
  /** Retained messages queued to subscribers (sent a page at a time, paced by the socket). */
  retainedSent: number;
  /** Times an MQTT socket stopped being read because its packet queue held too many bytes. */
  pauses: number;
  /** Times a socket was not read for a rate-limit refusal's retry time (inboundGate.ts `hold`). */
  holds: number;
  /** Bytes of inbound PUBLISH packets queued behind a pending one, over every open connection. */
  inboundQueuedBytes: number;
}

/** An offline queue this node keeps (metrics, and the subscriptions a resume on this node starts from). */
export interface HeldQueue {
  /** Queue length after this node's last append. */
  readonly length: number;
  /** The session's filters the queue holds on the bus. */
  readonly subs: ReadonlyMap<string, 0 | 1>;
}

/** Where a persistent session's resume is: about to claim (stored filters subscribed), or just claimed. */
/** 'claiming': before the claim is sent; 'answered': the claim answered, nothing done with it yet; 'claimed': its subscriptions restored. */
export type ResumePhase = 'claiming' | 'answered' | 'claimed';

/**
 * Test seams (never set in production): awaited at fixed points, so that a test can close a
 * connection exactly there instead of racing it with sleeps.
 */
export interface BridgeHooks {
  resume?(phase: ResumePhase, c: { readonly closed: boolean; readonly principal: { sub: string; org: string }; pending(): unknown[] }): Promise<void>;
}

/** Everything a session needs from the bridge; built once per hub node. */
export interface BridgeContext {
  nodeId: string;
  verifier: TokenVerifier;
  roleGrants: RoleGrants;
  bus: Bus;
  /** The publish path shared with WebSocket and HTTP (grant check, `publish.denied` audit, bus). */
  publisher: Publisher;
  audit: AuditSink;
  commands?: CommandHandler;
  /** Fleet command delivery for `$commands/<device>` subscriptions. */
  fleet?: FleetDelivery;
  presence?: PresenceTracker;
  /** History topics are appended before they are published (the publisher does it; kept for the Will path's reach). */
  history?: HistoryRecorder;
  retained: RetainedStore;
  fanout: MqttFanout;
  flusher: FlushScheduler;
  log: Logger;
  limits: MqttLimits;
  /** Live connections on this node (keepalive sweep, shutdown). */
  sessions: Set<SweptSession>;
  /** Client-id takeover across nodes. */
  takeover: TakeoverRegistry;
  store: SessionStore;
  policy: SessionPolicy;
  stats: SessionStats;
  /** Offline queues held by this node. */
  queues: Set<HeldQueue>;
  /** The newest offline queue of each session parked on this node, by `SessionRef.key`. */
  parkedHere: Map<string, HeldQueue>;
  /** Rate limits, connection caps and quotas shared with the other transports (hub/limits). */
  quotas: LimitService;
  /** Graceful drain: refuses new commands, counts those in flight and the session writes still to flush. */
  drain?: DrainGate;
  /** The node's registry of live sessions across transports (revocation ends sessions through it). */
  live?: SessionRegistry;
  /** Test seams (`BridgeHooks`); absent in production. */
  hooks?: BridgeHooks;
}

/**
 * The logger of one MQTT connection: its correlation id is its session id, which is also the
 * `session` and `correlationId` of the events it causes (as for WebSocket connections). Made per
 * log line, not kept per connection.
 */
export function sessionLog(ctx: Pick<BridgeContext, 'log'>, session: string): Logger {
  return ctx.log.child({ correlationId: session });
}
