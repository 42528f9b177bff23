import { randomUUID } from 'node:crypto';
import type { BridgeContext } from './bridgeContext.ts';
import { OfflineQueue } from './offlineQueue.ts';
import { NODE_ALIVE_MS, queueOwner } from './sessionStore.ts';

/** How often a node beats and looks for orphaned sessions (a node is alive for NODE_ALIVE_MS after a beat). */
export const BEAT_MS = NODE_ALIVE_MS / 3;
/** Sessions adopted per beat (the rest on the next ones). */
const ADOPT_PER_BEAT = 500;

/**
 * Keeps this node's heartbeat in the session store and adopts parked sessions whose offline
 * queue was on a node that stopped beating (crash, partition, shutdown): each gets an offline
 * queue here, which holds its subscriptions and appends to its queue from then on. What was
 * published between the stop and the adoption (up to NODE_ALIVE_MS + BEAT_MS) is not queued
 * (docs/mqtt.md "Known limits"). Ownership in the store is checked at every write, so a node that
 * only lost Redis for a while finds its queues adopted and stops them at its next append.
 */
export function startOrphanAdoption(ctx: BridgeContext, stats: { adopted: number }): { stop(): Promise<void> } {
  let running = false;
  let stopped = false;
  const beat = async () => {
    if (running || stopped) return;
    running = true;
    try {
      await ctx.store.heartbeat(ctx.nodeId);
      const adopted = await ctx.store.adoptOrphans(ctx.nodeId, () => queueOwner(ctx.nodeId, randomUUID()), ADOPT_PER_BEAT);
      for (const a of adopted) {
        const session = a.owner.slice(a.owner.lastIndexOf(':') + 1);
        new OfflineQueue(ctx, a.ref, session, a.owner, new Map(Object.entries(a.subs)), a.expiryMs, Promise.resolve(true));
      }
      if (adopted.length > 0) {
        stats.adopted += adopted.length;
        ctx.log.info({ adopted: adopted.length }, 'mqtt: adopted parked sessions of a node that stopped beating');
      }
    } catch (err) {
      ctx.log.warn({ err: (err as Error).message }, 'mqtt session heartbeat or adoption failed; retried at the next beat');
    } finally {
      running = false;
    }
  };
  void beat();
  const timer = setInterval(() => void beat(), BEAT_MS);
  timer.unref();
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      // Stopping on purpose: the parked sessions of this node are adopted at the next beat elsewhere.
      await ctx.store.retire(ctx.nodeId).catch(() => {});
    },
  };
}
