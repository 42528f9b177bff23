import type { BusMessage } from '../bus/bus.ts';
import { isReservedTopic } from '../fleet/fleet.ts';
import { sessionLog, type BridgeContext, type HeldQueue } from './bridgeContext.ts';
import type { Subscriber } from './mqttFanout.ts';
import { encodeEntry, isExpired } from './sessionCodec.ts';
import type { SessionRef } from './sessionStore.ts';
import type { Registrant } from './takeoverRegistry.ts';

/** How long a queue keeps appending after its client registered again somewhere (the resume overlaps it). */
export const TAKEOVER_GRACE_MS = 5000;

/**
 * The offline side of a parked persistent session on the node where its connection ended: it
 * keeps the session's bus subscriptions and appends every QoS 1 message (QoS 0 is not queued) to
 * the session's queue in the store, one script call per event-loop turn. It stops when the store
 * says another holder owns the session (the client resumed, here or on another node), some
 * seconds after a takeover notice, or when the session expires.
 */
export class OfflineQueue implements Subscriber, HeldQueue, Registrant {
  readonly version = 4;
  readonly maxOut = Infinity;
  length = 0;
  /** The session's filters this queue holds on the bus (those the pattern cap allowed). */
  readonly subs: ReadonlyMap<string, 0 | 1>;
  private batch: Buffer[] = [];
  private scheduled = false;
  private stopped = false;
  private chain: Promise<void>;
  private readonly timers: NodeJS.Timeout[] = [];

  constructor(
    private readonly ctx: BridgeContext,
    private readonly ref: SessionRef,
    /** Connection id of the session it continues (takeover tie-break, logs). */
    readonly session: string,
    private readonly owner: string,
    subs: ReadonlyMap<string, 0 | 1>,
    expiryMs: number,
    parked: Promise<boolean>,
  ) {
    // The queue keeps the session's patterns on this node, so it holds them in the org's
    // distinct-pattern count (hub/limits) too; taken over from the live connection before it lets go.
    const held = new Map<string, 0 | 1>();
    for (const [pattern, qos] of subs) {
      // Fleet commands are read from the event store when the session resumes, never queued here.
      if (isReservedTopic(pattern)) continue;
      if (!ctx.quotas.holdPattern(ref.org, pattern)) continue;
      held.set(pattern, qos);
      ctx.fanout.add(ref.org, pattern, this, qos);
    }
    this.subs = held;
    ctx.queues.add(this);
    ctx.parkedHere.set(ref.key, this);
    ctx.takeover.watch(ref.key, this);
    this.timers.push(setTimeout(() => this.stop(), Math.min(expiryMs, 2 ** 31 - 1)));
    // The client is already back on this node (a takeover closed the old connection): overlap briefly.
    if (ctx.takeover.holds(ref.key)) this.takenOver();
    this.chain = parked.then(
      (ok) => {
        if (!ok) this.stop();
      },
      () => this.stop(),
    );
    for (const t of this.timers) t.unref();
  }

  queue(m: BusMessage): void {
    if (this.stopped) return;
    if (isExpired(m.expiresAt, Date.now())) return;
    const payload = Buffer.isBuffer(m.payload) ? m.payload : Buffer.from(m.payload.buffer, m.payload.byteOffset, m.payload.byteLength);
    this.batch.push(encodeEntry({ topic: m.topic, payload, dup: false, expiresAt: m.expiresAt ?? 0 }));
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        this.chain = this.chain.then(() => this.write());
      });
    }
  }

  sendShared(): void {}
  sendQos1(): void {}

  takenOver(): void {
    const t = setTimeout(() => this.stop(), TAKEOVER_GRACE_MS);
    t.unref();
    this.timers.push(t);
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    for (const pattern of this.subs.keys()) {
      this.ctx.fanout.remove(this.ref.org, pattern, this);
      this.ctx.quotas.dropPattern(this.ref.org, pattern);
    }
    this.ctx.queues.delete(this);
    if (this.ctx.parkedHere.get(this.ref.key) === this) {
      // No newer queue of this session here: its entry in the node's parked index goes too.
      this.ctx.parkedHere.delete(this.ref.key);
      this.ctx.store.unpark(this.ref, this.ctx.nodeId).catch(() => {});
    }
    this.ctx.takeover.unwatch(this.ref.key, this);
    this.batch = [];
  }

  private async write(): Promise<void> {
    const entries = this.batch;
    this.batch = [];
    if (this.stopped || entries.length === 0) return;
    try {
      const r = await this.ctx.store.append(this.ref, this.owner, entries, this.ctx.policy.maxQueue);
      if (!r) return this.stop();
      this.length = r.length;
      this.ctx.stats.queued += entries.length;
      this.ctx.stats.dropped.overflow += r.dropped;
    } catch (err) {
      this.ctx.stats.dropped.unavailable += entries.length;
      sessionLog(this.ctx, this.session).warn({ err: (err as Error).message, lost: entries.length }, 'mqtt offline queue: Redis append failed; messages dropped');
    }
  }
}
