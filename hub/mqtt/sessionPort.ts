import type { Logger } from '../log.ts';
import type { Packet } from 'mqtt-packet';
import type { ClientContext } from '../core/context.ts';
import type { RateLimits } from '../limits/connLimits.ts';
import type { BridgeContext } from './bridgeContext.ts';
import type { Subscriber } from './mqttFanout.ts';

/** Life of a connection: CONNECT awaited, CONNECT being authorised, open (CONNACK sent), closed. */
export type SessionState = 'connecting' | 'authenticating' | 'open' | 'closed';

type AuditType = Parameters<BridgeContext['audit']['record']>[1];

/**
 * What the packet handlers (sessionPublish.ts, sessionSubscribe.ts) may use of a connection. They
 * depend on this port, never on the concrete `MqttSession`, so a handler can be read and tested
 * alone and no import cycle runs through the session.
 */
export interface SessionPort extends ClientContext, Subscriber {
  readonly ctx: BridgeContext;
  /** This connection's logger (its correlation id is `session`). */
  readonly log: Logger;
  /** The connection is open (CONNACK sent, not closed). */
  readonly open: boolean;
  /** This session's filters → granted QoS (handlers change it, then call `subscriptionsChanged`). */
  readonly subs: Map<string, 0 | 1>;
  /** Inbound QoS 2 packet ids between PUBREC and PUBREL. */
  readonly qos2: Set<number>;
  /** The tier's rate limits and quotas (hub/limits), set at CONNECT. */
  readonly lim: RateLimits;
  /**
   * More retained messages should wait: the socket holds over a quarter of
   * ORGHUB_MAX_BACKPRESSURE, or QoS 1 deliveries are queued behind the in-flight window.
   */
  readonly backlogged: boolean;
  /**
   * After a rate-limit refusal: the socket is not read for `ms` (TCP holds the client back) and
   * the connection's later packets wait; resolves when the hold ends.
   */
  hold(ms: number): Promise<void>;
  /** Writes what is queued now instead of at the end of the turn. */
  flush(): void;
  /** Encodes and queues one packet for this turn's write (dropped once closed). */
  send(p: Packet): void;
  /** Queues already encoded bytes for this turn's write. */
  push(bytes: Buffer): void;
  /** Records an audit event in the principal's org. */
  audit(type: AuditType, data: Record<string, unknown>): void;
  /** Server-side close; MQTT 5 hears `code` first; the Will is published. */
  disconnect(code: number, reason: string): void;
  /** Closes without an ack, so that a 3.1.1 client resends after reconnecting. */
  dropForRetry(reason: string): void;
  /** The subscriptions changed: a persistent session stores them. */
  subscriptionsChanged(): void;
  /**
   * Keeps the detacher of a `$commands/<device>` subscription's fleet delivery (docs/fleet.md),
   * called at unsubscribe or close. Detaches at once when the session closed or dropped `pattern`
   * while the attach was pending.
   */
  holdFleet(pattern: string, detach: () => void): void;
  /** Detaches the fleet delivery of `pattern`; false when `pattern` has none (a bus subscription). */
  dropFleet(pattern: string): boolean;
}
