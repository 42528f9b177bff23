import type { Bus, BusMessage } from '../bus/bus.ts';
import { isExpired, remainingExpiryS } from './sessionCodec.ts';
import { encodePublish, packetIdOffset, type Version } from './outbound.ts';
import { matches } from '../acl/topic.ts';

/** What the fan-out needs from a session: a live connection, or the offline queue of a parked one. */
export interface Subscriber {
  readonly version: Version;
  /** Largest packet the client accepts (MQTT 5 Maximum Packet Size); Infinity when unset. */
  readonly maxOut: number;
  /** The session's filters → granted QoS (overlapping filters deliver once, `overlapDelivery`). */
  readonly subs: ReadonlyMap<string, 0 | 1>;
  /** Queues shared QoS 0 bytes (must not be modified). */
  sendShared(bytes: Buffer): void;
  /** Queues a QoS 1 delivery from a shared encoding with its packet id at `idOffset`. */
  sendQos1(template: Buffer, idOffset: number): void;
  /** Set on offline queues: they take QoS 1 messages as they are, not encoded (QoS 0 is not queued). */
  queue?(m: BusMessage): void;
}

interface Entry {
  readonly org: string;
  readonly pattern: string;
  /** Subscriber → granted QoS of its subscription to this pattern. */
  readonly subs: Map<Subscriber, 0 | 1>;
  dispose: () => void;
}

export interface MqttFanoutStats {
  messages: number;
  deliveries: number;
  /** Messages not delivered because their MQTT 5 Message Expiry had passed. */
  expired: number;
}

/**
 * Bridges the bus to MQTT subscribers: one bus subscription per distinct (org, pattern) held by
 * local MQTT sessions. Each message is encoded at most once per (protocol version, QoS) and the
 * bytes are queued to every subscriber; each session writes its queue once per turn.
 *
 * Messages crossing the bus carry no retain flag, so live deliveries go out with RETAIN 0 at
 * min(publish QoS, granted QoS) (docs/mqtt.md).
 */
export class MqttFanout {
  private readonly entries = new Map<string, Entry>();
  readonly stats: MqttFanoutStats = { messages: 0, deliveries: 0, expired: 0 };

  constructor(private readonly bus: Bus) {}

  /** Adds or updates `s`'s subscription; true when a new bus subscription was opened (flush before SUBACK). */
  add(org: string, pattern: string, s: Subscriber, qos: 0 | 1): boolean {
    const key = `${org}\u0000${pattern}`;
    const existing = this.entries.get(key);
    if (existing) {
      existing.subs.set(s, qos);
      return false;
    }
    const e: Entry = { org, pattern, subs: new Map([[s, qos]]), dispose: () => {} };
    e.dispose = this.bus.subscribe(org, pattern, (m) => this.deliver(e, m));
    this.entries.set(key, e);
    return true;
  }

  remove(org: string, pattern: string, s: Subscriber): void {
    const key = `${org}\u0000${pattern}`;
    const e = this.entries.get(key);
    if (!e || !e.subs.delete(s) || e.subs.size > 0) return;
    this.entries.delete(key);
    e.dispose();
  }

  get size(): number {
    return this.entries.size;
  }

  private deliver(e: Entry, m: BusMessage): void {
    this.stats.messages++;
    let expiryS: number | undefined;
    if (m.expiresAt) {
      const now = Date.now();
      if (isExpired(m.expiresAt, now)) {
        this.stats.expired++;
        return;
      }
      expiryS = remainingExpiryS(m.expiresAt, now);
    }
    const out = { topic: m.topic, payload: m.payload, retain: false, expiryS };
    let q0v4: Buffer | undefined;
    let q0v5: Buffer | undefined;
    let q1v4: Buffer | undefined;
    let q1v5: Buffer | undefined;
    let off4 = 0;
    let off5 = 0;
    let n = 0;
    for (const [s, g] of e.subs) {
      const granted = s.subs.size > 1 ? overlapDelivery(s.subs, e.pattern, m.topic) : g;
      if (granted === undefined) continue;
      // MQTT delivers at the minimum of the publish QoS and the subscription's
      if (s.queue) {
        if (granted === 1 && m.qos === 1) s.queue(m);
      } else if (granted === 0 || m.qos === 0) {
        const b = s.version === 5 ? (q0v5 ??= encodePublish(out, 0, 5)) : (q0v4 ??= encodePublish(out, 0, 4));
        if (b.length > s.maxOut) continue;
        s.sendShared(b);
      } else if (s.version === 5) {
        if (!q1v5) off5 = packetIdOffset((q1v5 = encodePublish(out, 1, 5)));
        if (q1v5.length > s.maxOut) continue;
        s.sendQos1(q1v5, off5);
      } else {
        if (!q1v4) off4 = packetIdOffset((q1v4 = encodePublish(out, 1, 4)));
        s.sendQos1(q1v4, off4);
      }
      n++;
    }
    this.stats.deliveries += n;
  }
}

/**
 * Overlapping subscriptions (MQTT 3.1.1 §3.3.5, MQTT 5 §3.3.4): when several of one session's
 * filters match a message, the bridge sends it **once**, at the highest QoS granted among them.
 * The bus hands the message to every matching filter separately, so each filter asks here whether
 * it is the one that delivers: the smallest matching filter (by string order) does, the others
 * stay silent. Pure and deterministic: no message ids or per-message state are needed.
 *
 * Returns the QoS to deliver at when `pattern` delivers `topic` for a session holding `subs`
 * (filter → granted QoS), or undefined when another of its filters does.
 */
export function overlapDelivery(subs: ReadonlyMap<string, 0 | 1>, pattern: string, topic: string): 0 | 1 | undefined {
  let qos: 0 | 1 = subs.get(pattern) ?? 0;
  for (const [p, q] of subs) {
    if (p === pattern || !matches(p, topic)) continue;
    if (p < pattern) return undefined;
    if (q > qos) qos = q;
  }
  return qos;
}
