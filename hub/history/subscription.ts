import type { Bus, BusMessage, PublishMeta } from '../bus/bus.ts';
import { HubError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { planRecovery, retentionOf, type HistoryMessage, type HistoryRead, type HistoryStore, type Retention, type StreamPosition } from './history.ts';
import { Sequencer } from './sequencer.ts';

/** The publish side: every message of a history topic is appended (gets its offset) before it is published. */
export interface HistoryRecorder {
  readonly store: HistoryStore;
  retention(topic: string): Retention | undefined;
  /** Throws HubError('unavailable') when the store or the bus is down (nothing was published). */
  publish(org: string, topic: string, payload: Uint8Array, meta: PublishMeta): Promise<void>;
}

export function createHistoryRecorder(opts: { store: HistoryStore; bus: Bus; namespaces: ReadonlyMap<string, Retention>; log: Logger }): HistoryRecorder {
  const { store, bus, namespaces, log } = opts;
  return {
    store,
    retention: (topic) => retentionOf(topic, namespaces),
    async publish(org, topic, payload, meta) {
      const r = retentionOf(topic, namespaces)!;
      if (!bus.connected) throw new HubError('unavailable', 'message bus unavailable; nothing was published');
      let pos: StreamPosition;
      try {
        pos = await store.append(org, topic, { payload, contentType: meta.contentType, from: meta.from, ts: Date.now() }, r);
      } catch (err) {
        if (err instanceof HubError) throw err; // `limit`: the org's topic bound
        log.warn({ err: (err as Error).message }, 'history append failed');
        throw new HubError('unavailable', 'history store unavailable; nothing was published');
      }
      // Should the bus fail now, the message is in history: live subscribers fill the gap from there.
      bus.publish(org, topic, payload, { ...meta, offset: pos.offset, epoch: pos.epoch });
    },
  };
}

export interface HistorySubscription {
  /** Present when the `sub` asked to resume (`since`). */
  recovered?: boolean;
  /** Messages published after `since`, when known. */
  missed?: number;
  /** Where the subscriber stands once `messages` are delivered. */
  position: StreamPosition;
  /** The recovered messages, oldest first; send them after the `ok`, before calling `start`. */
  messages: BusMessage[];
  /** Goes live: messages that arrived meanwhile, then every later one, in order and exactly once. */
  start(deliver: (msgs: BusMessage[]) => void): void;
  close(): void;
}

const toBus = (org: string, topic: string, epoch: string, m: HistoryMessage): BusMessage => ({ org, topic, payload: m.payload, contentType: m.contentType, from: m.from, ts: m.ts, qos: 1, offset: m.offset, epoch });

/**
 * The recovered messages of a read as bus messages, made once per read: reads shared by many
 * resumes (hub/history/sharedReads.ts) then hand every subscriber the same array, which the
 * transport also encodes once (read-only from here on).
 */
const converted = new WeakMap<HistoryRead, BusMessage[]>();
function busMessagesOf(org: string, topic: string, read: HistoryRead): BusMessage[] {
  let out = converted.get(read);
  if (!out) converted.set(read, (out = read.messages.map((m) => toBus(org, topic, read.top.epoch, m))));
  return out;
}

/**
 * Subscribes one client to a history topic: the live bus subscription is opened (and confirmed)
 * FIRST and buffers, then the store is read, so nothing published in between can fall into a
 * gap; the sequencer then drops what the read already returned (no duplicate at the switch) and
 * fills any gap it sees later from the store (publishes from two nodes may cross on NATS).
 */
export async function openHistorySubscription(opts: {
  recorder: HistoryRecorder;
  bus: Bus;
  log: Logger;
  org: string;
  topic: string;
  since?: StreamPosition;
  /** Most messages recovered in one resume (beyond: recovered false). */
  maxRecover: number;
  /** How long a message ahead of a gap waits for the missing ones before they are read from the store. */
  gapWaitMs?: number;
}): Promise<HistorySubscription> {
  const { recorder, bus, log, org, topic, since } = opts;
  const r = recorder.retention(topic)!;
  const gapWaitMs = opts.gapWaitMs ?? 100;
  let buffered: BusMessage[] | undefined = [];
  let deliver: ((msgs: BusMessage[]) => void) | undefined;
  let closed = false;
  let seq: Sequencer<BusMessage> | undefined;
  let gapTimer: NodeJS.Timeout | undefined;

  const emit = (msgs: BusMessage[]) => {
    if (msgs.length > 0 && !closed) deliver!(msgs);
  };
  const fillGap = async () => {
    gapTimer = undefined;
    const gap = seq?.gap();
    if (!gap || closed) return;
    try {
      const read = await recorder.store.read(org, topic, gap.from - 1, gap.to - gap.from + 1, r);
      for (const m of read.messages) if (read.top.epoch === seq!.epoch) emit(seq!.push(toBus(org, topic, read.top.epoch, m)));
      const still = seq!.gap();
      if (still && still.from === gap.from) emit(seq!.skipTo(still.to)); // gone from the store (or never there)
    } catch (err) {
      log.warn({ err: (err as Error).message, topic }, 'history gap not filled; retrying');
    }
    if (seq?.gap()) gapTimer = setTimeout(() => void fillGap(), gapWaitMs);
  };
  const onLive = (m: BusMessage) => {
    if (closed) return;
    if (buffered) return void buffered.push(m);
    emit(seq!.push(m));
    if (seq!.holding > 0 && !gapTimer) gapTimer = setTimeout(() => void fillGap(), gapWaitMs);
  };

  const dispose = bus.subscribe(org, topic, onLive);
  const close = () => {
    closed = true;
    if (gapTimer) clearTimeout(gapTimer);
    dispose();
  };
  try {
    await bus.flush();
    const from = since?.offset ?? 0;
    const read = await recorder.store.read(org, topic, since ? from : Number.MAX_SAFE_INTEGER, since ? opts.maxRecover : 0, r);
    const plan = since ? planRecovery(since, read.top, read.earliest) : undefined;
    let messages: BusMessage[] = [];
    let last = read.top.offset;
    if (plan?.recovered) {
      if ((plan.missed ?? 0) > opts.maxRecover) {
        plan.recovered = false;
      } else {
        messages = busMessagesOf(org, topic, read);
        last = messages.length > 0 ? messages[messages.length - 1].offset! : from;
      }
    }
    seq = new Sequencer<BusMessage>(last, read.top.epoch);
    return {
      ...(plan ? { recovered: plan.recovered, missed: plan.missed } : {}),
      position: { offset: last, epoch: read.top.epoch },
      messages,
      start(fn) {
        deliver = fn;
        const early = buffered ?? [];
        buffered = undefined;
        for (const m of early) onLive(m);
      },
      close,
    };
  } catch (err) {
    close();
    if (err instanceof HubError) throw err;
    log.warn({ err: (err as Error).message, topic }, 'history read failed');
    throw new HubError('unavailable', 'history store unavailable; not subscribed');
  }
}
