import type { Bus, BusMessage } from '../bus/bus.ts';
import { PatternIndex } from '../bus/patternIndex.ts';
import { isExpired, remainingExpiryS } from './sessionCodec.ts';
import { encodePublish, packetIdOffset, type Version } from './outbound.ts';

/** What the fan-out needs from a session: a live connection, or the offline queue of a parked one. */
export interface Subscriber {
  readonly version: Version;
  /** Largest packet the client accepts (MQTT 5 Maximum Packet Size); Infinity when unset. */
  readonly maxOut: number;
  /** The session's filters → granted QoS (what it holds; overlaps are merged in `route`). */
  readonly subs: ReadonlyMap<string, 0 | 1>;
  /** Queues shared QoS 0 bytes (must not be modified). */
  sendShared(bytes: Buffer): void;
  /** Queues a QoS 1 delivery from a shared encoding with its packet id at `idOffset`. */
  sendQos1(template: Buffer, idOffset: number): void;
  /** Set on offline queues: they take QoS 1 messages as they are, not encoded (QoS 0 is not queued). */
  queue?(m: BusMessage): void;
}

interface Entry {
  /** Subscriber → granted QoS of its subscription to this pattern. */
  readonly subs: Map<Subscriber, 0 | 1>;
}

/** One bus subscription per org with local MQTT subscribers, and the index of their filters. */
interface OrgState {
  readonly entries: Map<string, Entry>;
  readonly index: PatternIndex<Entry>;
  /** Topic → its subscribers at their QoS (merged over overlapping filters); cleared on any change. */
  readonly cache: Map<string, Map<Subscriber, 0 | 1>>;
  dispose: () => void;
}

const TOPIC_CACHE = 4096;

export interface MqttFanoutStats {
  messages: number;
  deliveries: number;
  /** Messages not delivered because their MQTT 5 Message Expiry had passed. */
  expired: number;
}

/**
 * Bridges the bus to MQTT subscribers: one bus subscription per org with local MQTT sessions (the
 * node receives and parses each message once), matched against the sessions' filters locally. A
 * session whose filters overlap on a message gets it ONCE, at the highest QoS granted by the
 * matching filters (MQTT 3.1.1 §3.3.5; MQTT 5 §3.3.4 allows it). Each message is encoded at most
 * once per (protocol version, QoS) and the bytes are queued to every subscriber; each session
 * writes its queue once per turn.
 *
 * Messages crossing the bus carry no retain flag, so live deliveries go out with RETAIN 0 at
 * min(publish QoS, granted QoS) (docs/mqtt.md).
 */
export class MqttFanout {
  private readonly orgs = new Map<string, OrgState>();
  private patterns = 0;
  readonly stats: MqttFanoutStats = { messages: 0, deliveries: 0, expired: 0 };

  constructor(private readonly bus: Bus) {}

  /** Adds or updates `s`'s subscription; true when a new bus subscription was opened (flush before SUBACK). */
  add(org: string, pattern: string, s: Subscriber, qos: 0 | 1): boolean {
    let opened = false;
    let os = this.orgs.get(org);
    if (!os) {
      const state: OrgState = { entries: new Map(), index: new PatternIndex(), cache: new Map(), dispose: () => {} };
      state.dispose = this.bus.subscribeOrg(org, (m) => this.route(state, m));
      this.orgs.set(org, (os = state));
      opened = true;
    }
    os.cache.clear();
    let e = os.entries.get(pattern);
    if (!e) {
      e = { subs: new Map() };
      os.entries.set(pattern, e);
      os.index.add(pattern, e);
      this.patterns++;
    }
    e.subs.set(s, qos);
    return opened;
  }

  remove(org: string, pattern: string, s: Subscriber): void {
    const os = this.orgs.get(org);
    const e = os?.entries.get(pattern);
    if (!os || !e || !e.subs.delete(s)) return;
    os.cache.clear();
    if (e.subs.size > 0) return;
    os.entries.delete(pattern);
    os.index.remove(pattern, e);
    this.patterns--;
    if (os.entries.size > 0) return;
    this.orgs.delete(org);
    os.dispose();
  }

  /** Distinct (org, filter) held by local sessions. */
  get size(): number {
    return this.patterns;
  }

  private route(os: OrgState, m: BusMessage): void {
    this.stats.messages++;
    let subs = os.cache.get(m.topic);
    if (!subs) {
      let first: Entry | undefined;
      let merged: Map<Subscriber, 0 | 1> | undefined;
      os.index.match(m.topic, (e) => {
        if (!first) return void (first = e);
        // Overlapping filters: one delivery per session, at the highest granted QoS.
        merged ??= new Map(first.subs);
        for (const [s, q] of e.subs) if ((merged.get(s) ?? -1) < q) merged.set(s, q);
      });
      subs = merged ?? (first as Entry | undefined)?.subs ?? new Map();
      if (os.cache.size >= TOPIC_CACHE) os.cache.clear();
      os.cache.set(m.topic, subs);
    }
    if (subs.size > 0) this.deliver(subs, m);
  }

  private deliver(subs: Map<Subscriber, 0 | 1>, m: BusMessage): void {
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
    // Lazily encoded, indexed by version (4|5) * 2 + qos.
    let q0v4: Buffer | undefined;
    let q0v5: Buffer | undefined;
    let q1v4: Buffer | undefined;
    let q1v5: Buffer | undefined;
    let off4 = 0;
    let off5 = 0;
    let n = 0;
    for (const [s, granted] of subs) {
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
