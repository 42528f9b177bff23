import type { TemplatedApp } from '@trufflesuite/uws-js-unofficial';
import type { Bus, BusMessage } from '../../bus/bus.ts';
import { encodeMsgpack } from '../../protocol/frames.ts';
import type { Encoding } from '../../protocol/frames.ts';

/** One per distinct (org, pattern) held locally; kept small, as devices each hold their own pattern. */
interface Entry {
  readonly org: string;
  readonly pattern: string;
  refs: number;
  pending: BusMessage[];
  dispose: () => void;
}

const utf8 = new TextDecoder();

/** The uWS topic a socket subscribes to for one (org, pattern) and subprotocol. */
export function uwsTopic(enc: Encoding, org: string, pattern: string): string {
  return `${enc === 'json' ? 'j' : 'm'}\u0000${org}\u0000${pattern}`;
}

export interface FanoutStats {
  messages: number;
  deliveries: number;
  frames: number;
}

/**
 * Bridges the bus to WebSocket subscribers. Each distinct (org, pattern) held by local sockets
 * has one bus subscription. Messages that arrive within about a millisecond are coalesced into
 * one frame per (pattern, subprotocol) and handed to uWS's native publish, which writes the
 * same bytes to every subscribed socket without crossing back into JavaScript per socket.
 * That keeps per-delivery cost in C++ (see BASELINES.md, "What coalescing buys").
 */
export class WsFanout {
  private readonly entries = new Map<string, Entry>();
  private readonly dirty: Entry[] = [];
  private scheduled = false;
  readonly stats: FanoutStats = { messages: 0, deliveries: 0, frames: 0 };

  constructor(
    private readonly app: TemplatedApp,
    readonly bus: Bus,
  ) {}

  /**
   * Adds one local subscriber of (org, pattern); the first one opens the bus subscription and
   * the call returns true, so the caller can `confirm()` before acknowledging the subscribe.
   */
  retain(org: string, pattern: string): boolean {
    const key = `${org}\u0000${pattern}`;
    const existing = this.entries.get(key);
    if (existing) {
      existing.refs++;
      return false;
    }
    const entry: Entry = {
      org,
      pattern,
      refs: 1,
      pending: [],
      dispose: () => {},
    };
    entry.dispose = this.bus.subscribe(org, pattern, (m) => this.enqueue(entry, m));
    this.entries.set(key, entry);
    return true;
  }

  /** Resolves once new bus subscriptions are known to the server, so no later publish misses them. */
  async confirm(): Promise<void> {
    await this.bus.flush().catch(() => {});
  }

  release(org: string, pattern: string): void {
    const key = `${org}\u0000${pattern}`;
    const e = this.entries.get(key);
    if (!e || --e.refs > 0) return;
    this.entries.delete(key);
    e.dispose();
  }

  get size(): number {
    return this.entries.size;
  }

  private enqueue(e: Entry, m: BusMessage): void {
    if (e.pending.length === 0) this.dirty.push(e);
    e.pending.push(m);
    if (!this.scheduled) {
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
    for (const e of dirty) {
      const msgs = e.pending;
      e.pending = [];
      this.stats.messages += msgs.length;
      const jsonTopic = uwsTopic('json', e.org, e.pattern);
      const msgpackTopic = uwsTopic('msgpack', e.org, e.pattern);
      const nJson = this.app.numSubscribers(jsonTopic);
      const nPack = this.app.numSubscribers(msgpackTopic);
      if (nJson > 0) {
        // Topic segments and patterns use a restricted alphabet: no escaping needed, but stringify is cheap and safe.
        this.app.publish(jsonTopic, jsonFrame(JSON.stringify(e.pattern), msgs), false);
        this.stats.frames++;
      }
      if (nPack > 0) {
        this.app.publish(msgpackTopic, msgpackFrame(e.pattern, msgs), true);
        this.stats.frames++;
      }
      this.stats.deliveries += (nJson + nPack) * msgs.length;
    }
  };
}

function jsonMsg(patternJson: string, m: BusMessage): string {
  // Topic segments use a restricted alphabet (acl/topic.ts), so they need no escaping.
  const data = m.contentType === 'json' ? utf8.decode(m.payload) : `"${Buffer.from(m.payload).toString('base64')}","enc":"base64"`;
  const from = m.from === undefined ? '' : `,"from":${JSON.stringify(m.from)}`;
  const pos = m.offset === undefined ? '' : `,"offset":${m.offset},"epoch":${JSON.stringify(m.epoch)}`;
  return `{"op":"msg","sub":${patternJson},"topic":"${m.topic}","data":${data}${from},"ts":${m.ts}${pos}}`;
}

/** One message is sent as an object, several as an array of objects (docs/protocol.md). */
export function jsonFrame(patternJson: string, msgs: BusMessage[]): string {
  if (msgs.length === 1) return jsonMsg(patternJson, msgs[0]);
  let out = '[';
  for (let i = 0; i < msgs.length; i++) out += (i ? ',' : '') + jsonMsg(patternJson, msgs[i]);
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
export function msgpackFrame(pattern: string, msgs: BusMessage[]): Uint8Array {
  try {
    return encodeMsgpack(msgs.length === 1 ? msgpackMsg(pattern, msgs[0]) : msgs.map((m) => msgpackMsg(pattern, m)));
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
  }
  const frames = msgs.map((m) => {
    try {
      const o = msgpackMsg(pattern, m);
      encodeMsgpack(o);
      return o;
    } catch (err) {
      if (!(err instanceof RangeError)) throw err;
      return { ...msgpackMsg(pattern, { ...m, contentType: 'bytes' }), enc: 'json' };
    }
  });
  return encodeMsgpack(frames.length === 1 ? frames[0] : frames);
}
