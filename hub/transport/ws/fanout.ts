import type { TemplatedApp, WebSocket } from '@trufflesuite/uws-js-unofficial';
import type { Bus, BusMessage } from '../../bus/bus.ts';
import { encodeMsgpack } from '../../protocol/frames.ts';
import type { Encoding } from '../../protocol/frames.ts';
import { LatencyHistogram, OTHER_ORGS } from '../../core/latencyHistogram.ts';

import { PatternIndex } from '../../bus/patternIndex.ts';

/**
 * The sockets of one org that hold exactly the same set of patterns share a group, and each socket
 * is subscribed to its group's uWS topic only. A message is queued once per group however many of
 * the group's patterns match it, so a connection holding 256 overlapping patterns receives it once
 * and the node encodes it once for that group (issue 9, "no amplification").
 */
interface Group {
  readonly key: string;
  readonly org: string;
  readonly patterns: readonly string[];
  readonly topicJson: string;
  readonly topicPack: string;
  refs: number;
  pending: BusMessage[];
  /** The matching pattern named as `sub` for each pending message. */
  pendingSubs: Entry[];
}

/** The groups holding one (org, pattern). */
interface Entry {
  readonly pattern: string;
  readonly patternJson: string;
  groups: Group[];
}

/** A group a topic reaches, and the pattern its frames name. */
interface Target {
  readonly g: Group;
  readonly e: Entry;
}

interface OrgState {
  readonly entries: Map<string, Entry>;
  readonly index: PatternIndex<Entry>;
  /**
   * Topic → the groups it reaches, deduplicated: most traffic repeats topics, so the index walk
   * (which visits every overlapping pattern) runs once per topic, not once per message. Cleared
   * whenever the org's groups change; bounded by TOPIC_CACHE.
   */
  readonly cache: Map<string, Target[]>;
  dispose: () => void;
}

const TOPIC_CACHE = 4096;

/** What the fan-out keeps on a connection: its encoding, org, patterns and current group. */
export interface FanoutMember {
  readonly enc: Encoding;
  readonly principal: { readonly org: string };
  readonly subs: readonly string[];
  fanoutGroup?: Group;
}

export type { Group as FanoutGroup };

const utf8 = new TextDecoder();

export interface FanoutStats {
  messages: number;
  deliveries: number;
  frames: number;
}

/**
 * Bridges the bus to WebSocket subscribers. Per org with local subscribers, one bus subscription
 * (the bus receives and parses each message once per node) and a pattern index; each message goes
 * once to each group of sockets with a matching pattern. Messages that arrive within about a
 * millisecond are coalesced into one frame per (group, subprotocol) and handed to uWS's native
 * publish, which writes the same bytes to every socket of the group without crossing back into
 * JavaScript per socket. That keeps per-delivery cost in C++ (see BASELINES.md, "What coalescing buys").
 */
export class WsFanout {
  private readonly orgs = new Map<string, OrgState>();
  private readonly groups = new Map<string, Group>();
  private readonly dirty: Group[] = [];
  private scheduled = false;
  private nextId = 1;
  private patterns = 0;
  readonly stats: FanoutStats = { messages: 0, deliveries: 0, frames: 0 };
  /**
   * Publish-to-deliver latency per org label: from the publisher's `Orghub-Ts` stamp to the
   * hand-off to uWS (so it includes the coalescing window). Keys come from `orgLabel`, a bounded set.
   */
  readonly latency = new Map<string, LatencyHistogram>();

  constructor(
    private readonly app: TemplatedApp,
    readonly bus: Bus,
    private readonly orgLabel: (org: string) => string = () => OTHER_ORGS,
  ) {}

  /**
   * Moves `ws` to the group of its current patterns (`m.subs`). Returns true when a new bus
   * subscription was opened, so the caller can `confirm()` before acknowledging the subscribe.
   * Anything pending is flushed first, so nothing queued for the old group is lost in the move.
   */
  update(ws: WebSocket<unknown>, m: FanoutMember): boolean {
    const org = m.principal.org;
    const sorted = [...m.subs].sort();
    const key = `${org}\u0000${sorted.join('\u0001')}`;
    const old = m.fanoutGroup;
    if (old && old.key === key) return false;
    if (this.scheduled) this.flush();
    if (old) {
      ws.unsubscribe(m.enc === 'json' ? old.topicJson : old.topicPack);
      this.leave(old);
      m.fanoutGroup = undefined;
    }
    if (sorted.length === 0) return false;
    let opened = false;
    let g = this.groups.get(key);
    if (g) g.refs++;
    else {
      const id = this.nextId++;
      g = { key, org, patterns: sorted, topicJson: `j\u0000${org}\u0000${id}`, topicPack: `m\u0000${org}\u0000${id}`, refs: 1, pending: [], pendingSubs: [] };
      this.groups.set(key, g);
      let os = this.orgs.get(org);
      if (!os) {
        const state: OrgState = { entries: new Map(), index: new PatternIndex(), cache: new Map(), dispose: () => {} };
        state.dispose = this.bus.subscribeOrg(org, (msg) => this.route(state, msg));
        this.orgs.set(org, (os = state));
        opened = true;
      }
      os.cache.clear();
      for (const p of sorted) {
        let e = os.entries.get(p);
        if (!e) {
          e = { pattern: p, patternJson: JSON.stringify(p), groups: [] };
          os.entries.set(p, e);
          os.index.add(p, e);
          this.patterns++;
        }
        e.groups.push(g);
      }
    }
    ws.subscribe(m.enc === 'json' ? g.topicJson : g.topicPack);
    m.fanoutGroup = g;
    return opened;
  }

  /** A closed socket leaves its group (uWS has already dropped its topic subscriptions). */
  remove(m: FanoutMember): void {
    if (m.fanoutGroup) this.leave(m.fanoutGroup);
    m.fanoutGroup = undefined;
  }

  /** Resolves once new bus subscriptions are known to the server, so no later publish misses them. */
  async confirm(): Promise<void> {
    await this.bus.flush().catch(() => {});
  }

  /** Distinct (org, pattern) held by local sockets. */
  get size(): number {
    return this.patterns;
  }

  private leave(g: Group): void {
    if (--g.refs > 0) return;
    this.groups.delete(g.key);
    const os = this.orgs.get(g.org);
    if (!os) return;
    os.cache.clear();
    for (const p of g.patterns) {
      const e = os.entries.get(p);
      if (!e) continue;
      e.groups = e.groups.filter((x) => x !== g);
      if (e.groups.length > 0) continue;
      os.entries.delete(p);
      os.index.remove(p, e);
      this.patterns--;
    }
    if (os.entries.size === 0) {
      this.orgs.delete(g.org);
      os.dispose();
    }
  }

  private route(os: OrgState, m: BusMessage): void {
    this.stats.messages++;
    let targets = os.cache.get(m.topic);
    if (!targets) {
      const found: Target[] = [];
      const seen = new Set<Group>();
      os.index.match(m.topic, (e) => {
        for (const g of e.groups) {
          if (seen.has(g)) continue;
          seen.add(g);
          found.push({ g, e });
        }
      });
      if (os.cache.size >= TOPIC_CACHE) os.cache.clear();
      os.cache.set(m.topic, (targets = found));
    }
    for (const { g, e } of targets) {
      if (g.pending.length === 0) this.dirty.push(g);
      g.pending.push(m);
      g.pendingSubs.push(e);
    }
    if (!this.scheduled && this.dirty.length > 0) {
      this.scheduled = true;
      // A 1 ms window rather than the end of this turn: NATS hands messages over a few per socket
      // read, so waiting one timer tick packs several reads into each frame. Measured with
      // bench:fanout: 1.00-1.12x nats-server's deliveries/s instead of 0.84-0.87x, and at 100 k
      // deliveries/s the p50/p99 stay on par with nats-server's (which coalesces writes the same way).
      setTimeout(this.flush, 1);
    }
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    const dirty = this.dirty.splice(0);
    for (const g of dirty) {
      const msgs = g.pending;
      const subs = g.pendingSubs;
      g.pending = [];
      g.pendingSubs = [];
      const nJson = this.app.numSubscribers(g.topicJson);
      const nPack = this.app.numSubscribers(g.topicPack);
      // Almost always one pattern names every message of the group: no per-message arrays then.
      const one = subs.every((e) => e === subs[0]) ? subs[0] : undefined;
      if (nJson > 0) {
        this.app.publish(g.topicJson, jsonFrame(one ? one.patternJson : subs.map((e) => e.patternJson), msgs), false);
        this.stats.frames++;
      }
      if (nPack > 0) {
        this.app.publish(g.topicPack, msgpackFrame(one ? one.pattern : subs.map((e) => e.pattern), msgs), true);
        this.stats.frames++;
      }
      this.stats.deliveries += (nJson + nPack) * msgs.length;
      if (nJson + nPack > 0) this.observeLatency(g.org, msgs);
    }
  };

  private observeLatency(org: string, msgs: BusMessage[]): void {
    const label = this.orgLabel(org);
    let h = this.latency.get(label);
    if (!h) this.latency.set(label, (h = new LatencyHistogram()));
    const now = Date.now();
    // ts is 0 when a backend published without the header: nothing to measure then.
    for (const m of msgs) if (m.ts > 0) h.observe((now - m.ts) / 1000);
  }
}

function jsonMsg(patternJson: string, m: BusMessage): string {
  // Topic segments use a restricted alphabet (acl/topic.ts), so they need no escaping.
  const data = m.contentType === 'json' ? utf8.decode(m.payload) : `"${Buffer.from(m.payload).toString('base64')}","enc":"base64"`;
  const from = m.from === undefined ? '' : `,"from":${JSON.stringify(m.from)}`;
  const pos = m.offset === undefined ? '' : `,"offset":${m.offset},"epoch":${JSON.stringify(m.epoch)}`;
  return `{"op":"msg","sub":${patternJson},"topic":"${m.topic}","data":${data}${from},"ts":${m.ts}${pos}}`;
}

/**
 * One message is sent as an object, several as an array of objects (docs/protocol.md). `sub` is the
 * JSON text of the pattern named in every message, or one per message.
 */
export function jsonFrame(sub: string | readonly string[], msgs: BusMessage[]): string {
  const at = (i: number) => (typeof sub === 'string' ? sub : sub[i]);
  if (msgs.length === 1) return jsonMsg(at(0), msgs[0]);
  let out = '[';
  for (let i = 0; i < msgs.length; i++) out += (i ? ',' : '') + jsonMsg(at(i), msgs[i]);
  return out + ']';
}

function msgpackMsg(pattern: string, m: BusMessage): object {
  const data = m.contentType === 'json' ? JSON.parse(utf8.decode(m.payload)) : m.payload;
  const o: Record<string, unknown> = m.from === undefined ? { op: 'msg', sub: pattern, topic: m.topic, data, ts: m.ts } : { op: 'msg', sub: pattern, topic: m.topic, data, from: m.from, ts: m.ts };
  if (m.offset !== undefined) (o.offset = m.offset), (o.epoch = m.epoch);
  return o;
}

/**
 * msgpackr packs recursively, so a JSON value nested a few thousand levels deep (a 4 KB payload)
 * overflows the stack. Such a message still reaches msgpack subscribers, as its JSON text in a
 * binary `data` with `"enc":"json"`, instead of throwing out of the flush (which would end the
 * process) or being left out.
 */
export function msgpackFrame(sub: string | readonly string[], msgs: BusMessage[]): Uint8Array {
  const at = (i: number) => (typeof sub === 'string' ? sub : sub[i]);
  try {
    return encodeMsgpack(msgs.length === 1 ? msgpackMsg(at(0), msgs[0]) : msgs.map((m, i) => msgpackMsg(at(i), m)));
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
  }
  const asJsonText = (m: BusMessage, pattern: string) => ({ ...msgpackMsg(pattern, { ...m, contentType: 'bytes' }), enc: 'json' });
  const frames = msgs.map((m, i) => {
    const pattern = at(i);
    try {
      const o = msgpackMsg(pattern, m);
      // Tried at the depth it will be packed at (inside the frame array), one level deeper than alone.
      encodeMsgpack([o]);
      return o;
    } catch (err) {
      if (!(err instanceof RangeError)) throw err;
      return asJsonText(m, pattern);
    }
  });
  try {
    return encodeMsgpack(frames.length === 1 ? frames[0] : frames);
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    // A value right at the stack's edge may still overflow here (the stack is deeper in this call):
    // every JSON message then goes as its text.
    const safe = msgs.map((m, i) => (m.contentType === 'json' ? asJsonText(m, at(i)) : msgpackMsg(at(i), m)));
    return encodeMsgpack(safe.length === 1 ? safe[0] : safe);
  }
}
