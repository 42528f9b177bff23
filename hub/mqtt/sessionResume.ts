import { matches } from '../acl/topic.ts';
import { deviceOfCommandTopic, isReservedTopic } from '../fleet/fleet.ts';
import { sessionLog, type BridgeContext } from './bridgeContext.ts';
import { OfflineQueue } from './offlineQueue.ts';
import type { SessionPort } from './sessionPort.ts';
import { filterRefusal } from './sessionSubscribe.ts';
import { encodePublish, packetIdOffset, type Version } from './outbound.ts';
import { decodeEntry, encodeEntry, entryPublishSize, entryTopic, isExpired, publishOf, remainingExpiryS, sameEntryTopic, writeEntryPublish, type EntryPublish } from './sessionCodec.ts';
import { isLiveOwner, queueOwner, type ClaimOptions, type Claimed, type SessionRef, type StoredSession } from './sessionStore.ts';

/** How long a resuming connection waits for the connection it took over to park the session. */
export const PARK_WAIT_MS = 2000;

/**
 * Resumes (or creates) a persistent session for a connection that owns `owner`. First waits,
 * bounded, for a connection that still holds the session (a takeover in progress, here or on
 * another node) to park it, so that its unacknowledged messages are in the queue. Then calls
 * `subscribe` with the stored subscriptions *before* claiming, so that a message published while
 * the claim runs reaches the live connection (the offline queue may hold it too: QoS 1 allows a
 * duplicate, not a loss). Rejects when the store is down.
 *
 * A session parked on this node skips the read: its offline queue here knows the filters, and the
 * claim is made only if no live connection holds the session (else the wait above follows).
 */
export async function resumeSession(ctx: BridgeContext, ref: SessionRef, owner: string, opts: ClaimOptions, subscribe: (s: StoredSession) => Promise<void>): Promise<Claimed | 'full'> {
  if (opts.clean) return claimed(ctx.store.claim(ref, owner, opts));
  const here = ctx.parkedHere.get(ref.key);
  if (here) {
    await subscribe({ owner: '', subs: Object.fromEntries(here.subs), qos2: [], drops: 0 });
    const r = await ctx.store.claim(ref, owner, { ...opts, unlessLive: true });
    if (r !== 'busy') return r;
  }
  const deadline = Date.now() + PARK_WAIT_MS;
  let s = await ctx.store.peek(ref);
  while (s && isLiveOwner(s.owner) && s.owner !== owner && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
    s = await ctx.store.peek(ref);
  }
  if (s) await subscribe(s);
  return claimed(ctx.store.claim(ref, owner, { ...opts, unlessLive: false }));
}

/** A claim without `unlessLive` never answers 'busy'. */
async function claimed(p: Promise<Claimed | 'full' | 'busy'>): Promise<Claimed | 'full'> {
  const r = await p;
  if (r === 'busy') throw new Error('session store answered busy to an unconditional claim');
  return r;
}

/**
 * The filters a persistent session stores: all of them, `$commands/<device>` ones included (the
 * offline queue leaves those out: fleet commands are read from the event store when the session
 * resumes, as at SUBSCRIBE; docs/mqtt.md "Fleet commands and persistent sessions").
 */
export function persistedSubs(subs: ReadonlyMap<string, 0 | 1>): Record<string, 0 | 1> {
  return Object.fromEntries(subs);
}

/**
 * Subscribes a resuming connection to the stored filters its token still grants (a new token may
 * grant less; the others are dropped), and that the org's distinct-pattern cap on this node
 * (hub/limits) still allows. `exact`: the claimed record is authoritative, and filters not in it
 * go. A `$commands/<device>` filter is kept without a bus subscription; the connection attaches its
 * fleet delivery after CONNACK (`attachCommands`). Resolves once new bus subscriptions are confirmed.
 */
export async function restoreSubscriptions(s: SessionPort, stored: StoredSession, exact: boolean): Promise<void> {
  const org = s.principal.org;
  let opened = false;
  for (const [pattern, q] of Object.entries(stored.subs)) {
    const isNew = !s.subs.has(pattern);
    const command = isReservedTopic(pattern);
    if (command && (!deviceOfCommandTopic(pattern) || !s.ctx.fleet)) continue;
    if (filterRefusal(pattern, s.grants, isNew, s.subs.size, s.ctx.limits.maxSubscriptions)) continue;
    if (isNew && !s.ctx.quotas.holdPattern(org, pattern)) {
      s.lim.hit('patterns');
      s.audit('limit.hit', { limit: 'patterns', transport: 'mqtt', resumed: true });
      continue;
    }
    if (command) {
      // Never on the bus: served by the fleet delivery (docs/fleet.md).
      s.subs.set(pattern, 1);
      continue;
    }
    const qos: 0 | 1 = q === 1 ? 1 : 0;
    s.subs.set(pattern, qos);
    if (s.ctx.fanout.add(org, pattern, s, qos)) opened = true;
  }
  if (exact) {
    for (const pattern of [...s.subs.keys()]) {
      if (pattern in stored.subs) continue;
      s.subs.delete(pattern);
      if (!s.dropFleet(pattern)) s.ctx.fanout.remove(org, pattern, s);
      s.ctx.quotas.dropPattern(org, pattern);
    }
  }
  if (opened) await s.ctx.bus.flush().catch(() => {});
}

/**
 * The queued messages of a resumed session as PUBLISH encodings for this client, oldest first:
 * expired ones (MQTT 5 Message Expiry) are dropped and counted; so are ones no current
 * subscription matches (the new token may grant less than the old one did). The encodings are
 * views into one buffer (one allocation per resume, not per message), each the connection's own
 * (its packet id is written in place); a topic is decoded and matched once per run of entries
 * that carry it, not per entry.
 */
export function queuedDeliveries(ctx: BridgeContext, entries: Buffer[], subs: ReadonlyMap<string, 0 | 1>, version: Version, maxOut: number, now = Date.now()): { template: Buffer; offset: number }[] {
  // First pass: what is delivered, and the bytes each takes (a legacy entry comes with its own encoding).
  const kept: (Buffer | EntryPublish)[] = [];
  const sizes: number[] = [];
  let total = 0;
  let last: Buffer | undefined;
  let lastGranted = false;
  for (const e of entries) {
    const size = entryPublishSize(e, version, now);
    if (size === 'expired') {
      ctx.stats.dropped.expired++;
      continue;
    }
    if (size === undefined) {
      const d = legacyPublish(e, version, now);
      if (d === 'expired') ctx.stats.dropped.expired++;
      else if (d && d.template.length <= maxOut && granted(subs, d.topic)) {
        kept.push(d);
        sizes.push(0);
      }
      continue;
    }
    if (!last || !sameEntryTopic(last, e)) lastGranted = granted(subs, entryTopic(e));
    last = e;
    if (!lastGranted || size > maxOut) continue;
    kept.push(e);
    sizes.push(size);
    total += size;
  }
  const out: { template: Buffer; offset: number }[] = [];
  const all = Buffer.allocUnsafe(total);
  let at = 0;
  for (let i = 0; i < kept.length; i++) {
    const k = kept[i];
    if (!Buffer.isBuffer(k)) {
      out.push(k);
      continue;
    }
    const size = sizes[i];
    const offset = writeEntryPublish(k, version, now, all, at) - at;
    out.push({ template: all.subarray(at, at + size), offset });
    at += size;
  }
  return out;
}

function granted(subs: ReadonlyMap<string, 0 | 1>, topic: string): boolean {
  for (const [p, q] of subs) if (q === 1 && matches(p, topic)) return true;
  return false;
}

/** An entry of the first (JSON) format, encoded with mqtt-packet. */
function legacyPublish(e: Buffer, version: Version, now: number): EntryPublish | 'expired' | undefined {
  const m = decodeEntry(e);
  if (!m) return undefined;
  if (isExpired(m.expiresAt, now)) return 'expired';
  const template = encodePublish({ topic: m.topic, payload: m.payload, retain: false, dup: m.dup, expiryS: m.expiresAt ? remainingExpiryS(m.expiresAt, now) : undefined }, 1, version);
  return { topic: m.topic, template, offset: packetIdOffset(template) };
}

/** What a closing persistent connection hands over to be parked. */
export interface ParkInput {
  ref: SessionRef;
  /** Connection id; the offline queue's owner token is derived from it. */
  session: string;
  owner: string;
  version: Version;
  subs: ReadonlyMap<string, 0 | 1>;
  qos2: Iterable<number>;
  /** Entries claimed from the store and not yet delivered: they go back first, as they were. */
  queued?: Buffer[];
  /** Unacknowledged (`sent`) and waiting deliveries, oldest first. */
  pending: { bytes: Buffer; sent: boolean }[];
  expiryMs: number;
}

/**
 * Parks a persistent session whose connection ended: an offline queue takes over its bus
 * subscriptions first (so nothing published meanwhile is missed), then the store records its
 * state with the unacknowledged messages (DUP) at the head of the queue. Call before the live
 * connection leaves the fan-out.
 */
export function parkSession(ctx: BridgeContext, p: ParkInput): OfflineQueue {
  const now = Date.now();
  const pending: Buffer[] = [...(p.queued ?? [])];
  for (const { bytes, sent } of p.pending) {
    const pkt = publishOf(bytes, p.version);
    if (!pkt) continue;
    const payload = typeof pkt.payload === 'string' ? Buffer.from(pkt.payload) : pkt.payload;
    const expiryS = pkt.properties?.messageExpiryInterval;
    pending.push(encodeEntry({ topic: pkt.topic, payload, dup: sent, expiresAt: expiryS ? now + expiryS * 1000 : 0 }));
  }
  const next = queueOwner(ctx.nodeId, p.session);
  const parked = ctx.store.park(p.ref, p.owner, next, { queueNode: ctx.nodeId, subs: Object.fromEntries(p.subs), qos2: [...p.qos2], pending, expiryMs: p.expiryMs, maxQueue: ctx.policy.maxQueue });
  ctx.drain?.flushLater(parked);
  parked.then(
    (ok) => {
      if (!ok) sessionLog(ctx, p.session).info({}, 'mqtt session not parked: another connection holds it');
    },
    (err) => {
      ctx.stats.dropped.unavailable += pending.length;
      sessionLog(ctx, p.session).warn({ err: (err as Error).message, lost: pending.length }, 'mqtt session not parked: Redis unavailable');
    },
  );
  return new OfflineQueue(ctx, p.ref, p.session, next, new Map(p.subs), p.expiryMs, parked);
}
