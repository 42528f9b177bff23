import type { TemplatedApp } from '@trufflesuite/uws-js-unofficial';
import type { RoleGrants } from '../../acl/grants.ts';
import type { AuditSink } from '../../audit/audit.ts';
import type { TokenVerifier } from '../../auth/principal.ts';
import type { CommandHandler } from '../../core/commands.ts';
import type { ClientContext } from '../../core/context.ts';
import type { Publisher } from '../../core/publisher.ts';
import type { LiveSession, SessionRegistry } from '../../core/sessions.ts';
import type { FleetDelivery } from '../../fleet/fleet.ts';
import type { HistoryRecorder, HistorySubscription } from '../../history/subscription.ts';
import type { RateLimits } from '../../limits/connLimits.ts';
import type { LimitService, Slot } from '../../limits/limitService.ts';
import type { Logger } from '../../log.ts';
import type { PresenceTracker } from '../../presence/tracker.ts';
import type { Encoding } from '../../protocol/frames.ts';
import type { FanoutGroup, WsFanout } from './fanout.ts';

/** The WebSocket endpoint's dependencies and per-socket state, shared by its parts. */
export interface WsLimits {
  maxFrameBytes: number;
  maxSubscriptions: number;
  idleTimeoutSeconds: number;
  maxBackpressure: number;
  /** Fair turns and holds (inbound.ts): ORGHUB_WS_TURN_BUDGET_MS (0: off), ORGHUB_WS_TURN_SLICE_MS, ORGHUB_WS_QUEUE_BYTES. */
  turnBudgetMs?: number;
  turnSliceMs?: number;
  maxQueuedBytes?: number;
}

export interface WsDeps {
  app: TemplatedApp;
  verifier: TokenVerifier;
  roleGrants: RoleGrants;
  publisher: Publisher;
  fanout: WsFanout;
  audit: AuditSink;
  commands?: CommandHandler;
  /** Delivers fleet commands on `$commands/<device>` subscriptions (absent: such subscriptions are refused). */
  fleet?: FleetDelivery;
  presence?: PresenceTracker;
  /** Topics of namespaces with history: offsets, epochs and resume (`sub` with `since`). */
  history?: HistoryRecorder;
  /** Most messages one resume may recover. */
  maxRecover?: number;
  log: Logger;
  limits: WsLimits;
  rateLimits: LimitService;
  /** The node's registry of live sessions (revocation closes through it). */
  sessions?: SessionRegistry;
}

/** Per-socket state. Kept small: 10k idle connections must stay under ~3 KiB each. */
export interface Conn extends ClientContext {
  enc: Encoding;
  /** Subscribed patterns; an array, not a Set: most connections hold one or two. */
  subs: string[];
  /** Token expiry in ms, checked by the sweep (no timer per connection: memory at 10k idle sockets). */
  expMs: number;
  openedAt: number;
  closed: boolean;
  closeReason?: string;
  /** Rate limits and quotas of this connection's tier. */
  lim: RateLimits;
  /** Connection slots (IP, org, user) given back at close. */
  slots: Slot[];
  /** Commands awaiting their durable ack. */
  inflight: number;
  /** The fan-out group of sockets holding the same patterns (fanout.ts). */
  fanoutGroup?: FanoutGroup;
  /**
   * `$commands/<device>` subscriptions (served by the fleet delivery, not the bus) and history-topic
   * subscriptions (delivered in offset order per connection). Neither is in `subs`, the fan-out's
   * pattern set. A null value: still being opened.
   */
  fleet?: Map<string, (() => void) | null>;
  history?: Map<string, HistorySubscription | null>;
  /** This connection in the node's session registry. */
  live?: LiveSession;
  /** Last frame (data, ping or pong) received from the client, for the idle sweep. */
  lastSeen: number;
  /** The hub pinged this silent connection and waits for any frame back. */
  pinged: boolean;
  /** Set when the connection was cut as a slow consumer: no more deliveries, 4001 once drained. */
  cutAt?: number;
  /** Frames waiting for their turn (inbound.ts), copies, oldest first; absent when none. */
  inq?: { frames: { b: ArrayBuffer; bin: boolean }[]; bytes: number };
  /** In the fair-turn scheduler's ready set. */
  ready?: boolean;
  /** Held after a rate-limit refusal: its frames wait until retryAfterMs has passed. */
  held?: boolean;
}

export type Id = number | string | undefined;
