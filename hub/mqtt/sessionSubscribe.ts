import type { ISubscribePacket, IUnsubscribePacket, Packet } from 'mqtt-packet';
import type { Grants } from '../acl/grants.ts';
import { isValidPattern } from '../acl/topic.ts';
import { isSharedFilter, Reason, subackRefusal, type FilterRefusal } from './codes.ts';
import { encodePublish, packetIdOffset, type Version } from './outbound.ts';
import type { RetainedMessage } from './retained.ts';
import type { SessionPort } from './sessionPort.ts';
import { deviceOfCommandTopic, isReservedTopic } from '../fleet/fleet.ts';

/**
 * Why `filter` cannot be subscribed, checked in the documented order (shared, grammar, grants,
 * subscription count); undefined when it can. `isNew`: not yet subscribed by this session.
 */
export function filterRefusal(filter: string, grants: Pick<Grants, 'canSubscribe'>, isNew: boolean, held: number, maxSubscriptions: number): FilterRefusal | undefined {
  if (isSharedFilter(filter)) return 'shared';
  if (!isValidPattern(filter)) return 'invalid';
  if (!grants.canSubscribe(filter)) return 'denied';
  if (isNew && held >= maxSubscriptions) return 'quota';
  return undefined;
}

/** Whether MQTT 5 Retain Handling `rh` asks for retained messages: 0 always, 1 for a new subscription, 2 never. */
export function wantsRetained(rh: number | undefined, isNew: boolean): boolean {
  const h = rh ?? 0;
  return h === 0 || (h === 1 && isNew);
}

/** Outbound QoS granted for a requested one: at most 1 (the bridge never sends QoS 2). */
export function grantedQos(requested: number): 0 | 1 {
  return requested === 0 ? 0 : 1;
}

/** UNSUBACK: MQTT 5 carries a code per filter (0x00, or 0x11 when it was not subscribed); 3.1.1 carries none. */
export function unsubackPacket(messageId: number | undefined, removed: boolean[], version: Version): Packet {
  const granted = version === 5 ? removed.map((r) => (r ? Reason.success : Reason.noSubscriptionExisted)) : [];
  return { cmd: 'unsuback', messageId, granted };
}

/**
 * SUBSCRIBE: each filter is granted or refused on its own. The bus subscription is confirmed
 * before SUBACK, and retained messages follow SUBACK. A persistent session stores its new
 * subscriptions before SUBACK is sent (best effort: a Redis failure is logged, not refused).
 */
export async function handleSubscribe(s: SessionPort, p: ISubscribePacket): Promise<void> {
  const granted: number[] = [];
  const retainedFor: { pattern: string; qos: 0 | 1 }[] = [];
  const commandTopics: string[] = [];
  let opened = false;
  for (const sub of p.subscriptions) {
    const pattern = sub.topic;
    const isNew = !s.subs.has(pattern);
    const refusal = filterRefusal(pattern, s.grants, isNew, s.subs.size, s.ctx.limits.maxSubscriptions);
    if (refusal) {
      if (refusal === 'denied') s.audit('subscribe.denied', { pattern, transport: 'mqtt' });
      if (refusal === 'quota') s.audit('limit.hit', { limit: 'subscriptions', max: s.ctx.limits.maxSubscriptions, transport: 'mqtt' });
      granted.push(subackRefusal(refusal, s.version));
      continue;
    }
    if (isReservedTopic(pattern) && (!deviceOfCommandTopic(pattern) || !s.ctx.fleet)) {
      granted.push(subackRefusal('invalid', s.version));
      continue;
    }
    if (isNew && !s.ctx.quotas.holdPattern(s.principal.org, pattern)) {
      // The org's distinct patterns on this node are at the tier's cap (hub/limits).
      s.lim.hit('patterns');
      s.audit('limit.hit', { limit: 'patterns', transport: 'mqtt' });
      granted.push(subackRefusal('quota', s.version));
      continue;
    }
    const qos = grantedQos(sub.qos);
    if (isReservedTopic(pattern)) {
      // Served by the fleet delivery from the event store, never from the bus (docs/fleet.md).
      if (isNew) commandTopics.push(pattern);
      s.subs.set(pattern, 1);
      granted.push(1);
      continue;
    }
    s.subs.set(pattern, qos);
    if (s.ctx.fanout.add(s.principal.org, pattern, s, qos)) opened = true;
    if (isNew) s.ctx.presence?.subscribed(s.session, pattern);
    granted.push(qos);
    if (wantsRetained(sub.rh, isNew)) retainedFor.push({ pattern, qos });
  }
  // The bus subscription is confirmed before SUBACK, so no publish after SUBACK is missed.
  if (opened) await s.ctx.bus.flush().catch(() => {});
  if (!s.open) return;
  if (granted.some((g) => g < 0x80)) s.subscriptionsChanged();
  s.send({ cmd: 'suback', messageId: p.messageId, granted });
  for (const r of retainedFor) await sendRetained(s, r.pattern, r.qos);
  for (const pattern of commandTopics) await attachCommands(s, pattern);
}

/**
 * Fleet commands go out at QoS 1 on `$commands/<device>`, pending ones right after SUBACK (or
 * after CONNACK and the queue, for a filter of a resumed persistent session).
 */
export async function attachCommands(s: SessionPort, pattern: string): Promise<void> {
  const detach = await s.ctx.fleet!.attach(s.principal.org, deviceOfCommandTopic(pattern)!, {
    session: s.session,
    transport: 'mqtt',
    send: (d) => {
      const bytes = encodePublish({ topic: pattern, payload: Buffer.from(JSON.stringify(d)), retain: false }, 1, s.version);
      if (bytes.length <= s.maxOut) s.sendQos1(bytes, packetIdOffset(bytes));
    },
  });
  s.holdFleet(pattern, detach);
}

/** Retained messages read and queued per page; the next page waits until the socket has drained. */
const RETAINED_PAGE = 100;

/**
 * Sends the org's retained messages matching `pattern` with RETAIN 1 at min(stored, granted) QoS,
 * a page at a time: before each next page, it waits (polling every 10 ms) until the socket holds
 * under a quarter of ORGHUB_MAX_BACKPRESSURE and no QoS 1 delivery is queued behind the in-flight
 * window, so a `#` subscription in a large org respects backpressure instead of buffering it all.
 * A store failure sends nothing more.
 */
async function sendRetained(s: SessionPort, pattern: string, granted: 0 | 1): Promise<void> {
  const store = s.ctx.retained;
  const pages = store.matchPages ? store.matchPages(s.principal.org, pattern, RETAINED_PAGE) : (async function* () { yield await store.match(s.principal.org, pattern); })();
  try {
    for await (const page of pages) {
      if (!s.open) return;
      queueRetained(s, page, granted);
      s.ctx.stats.retainedSent += page.length;
      s.flush();
      while (s.open && s.backlogged) await new Promise((r) => setTimeout(r, 10));
    }
  } catch (err) {
    s.log.warn({ err: (err as Error).message }, 'retained messages unavailable for a subscription');
  }
}

function queueRetained(s: SessionPort, list: RetainedMessage[], granted: 0 | 1): void {
  for (const m of list) {
    const qos: 0 | 1 = m.qos < granted ? m.qos : granted;
    const bytes = encodePublish({ topic: m.topic, payload: m.payload, retain: true }, qos, s.version);
    if (bytes.length > s.maxOut) continue;
    if (qos === 0) s.push(bytes);
    else s.sendQos1(bytes, packetIdOffset(bytes));
  }
}

/** UNSUBSCRIBE: drops each filter this session holds. */
export function handleUnsubscribe(s: SessionPort, p: IUnsubscribePacket): void {
  const removed = p.unsubscriptions.map((pattern) => {
    if (!s.subs.delete(pattern)) return false;
    s.ctx.quotas.dropPattern(s.principal.org, pattern);
    if (s.dropFleet(pattern)) return true;
    s.ctx.fanout.remove(s.principal.org, pattern, s);
    s.ctx.presence?.unsubscribed(s.session, pattern);
    return true;
  });
  if (removed.some(Boolean)) s.subscriptionsChanged();
  s.send(unsubackPacket(p.messageId, removed, s.version));
}
