import pg from 'pg';
import { START, formatPosition, type EventStore, type Position, type ReadAllBatch } from '../hub/eventstore/eventStore.ts';
import type { Logger } from '../hub/log.ts';
import { LIVE, advanceCheckpoint, applyBatch, loadCheckpoint, CheckpointConflictError } from './apply.ts';
import { acquireProjectionLock, type HeldLock } from './lock.ts';
import type { Projection } from './projection.ts';
import type { BatchReader } from './sharedReader.ts';

export interface RunnerOptions {
  store: EventStore;
  /** Owner connections; every batch runs `SET LOCAL ROLE <writerRole>`. */
  pool: pg.Pool;
  databaseUrl: string;
  writerRole: string;
  projection: Projection;
  batchSize: number;
  /** Sleep when caught up. */
  pollMs: number;
  /** How often a standby tries the lock (takeover time is at most about this). */
  lockPollMs: number;
  log: Logger;
  /** Shared by the runners of one process (sharedReader.ts); default: a plain store.readAll. */
  read?: BatchReader;
}

export interface RunnerStatus {
  name: string;
  active: boolean;
  position: string;
  applied: number;
  deadLetters: number;
}

export interface ProjectionRunner {
  status(): RunnerStatus;
  stop(): Promise<void>;
}

/**
 * Runs one projection: waits for its lock (standby), then follows the global order from its
 * checkpoint in batches through `store.readAll` (the order that never skips, docs/eventstore.md).
 * Each batch is one transaction as the writer role: the handler's rows, dead letters and the
 * checkpoint's compare-and-set. The next batch is read while the current one is written.
 */
export function startProjectionRunner(opts: RunnerOptions): ProjectionRunner {
  const { store, pool, projection, log } = opts;
  let stopped = false;
  let active = false;
  let position: Position = START;
  let applied = 0;
  let deadLetters = 0;
  const sleepers = new Set<() => void>();
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      if (stopped) return resolve();
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        sleepers.delete(done);
        resolve();
      }
      sleepers.add(done);
    });
  const months = new Set<string>();

  async function applyOne(batch: ReadAllBatch, prev: Position): Promise<void> {
    const client = await pool.connect();
    let broken: unknown;
    try {
      await client.query(`BEGIN; SET LOCAL ROLE ${opts.writerRole}`);
      const out = await applyBatch(client, projection, batch.events, LIVE, months);
      await advanceCheckpoint(client, projection.name, projection.version, prev, batch.next, batch.events.length, out.deadLetters);
      await client.query('COMMIT');
      applied += out.applied;
      if (out.deadLetters) {
        deadLetters += out.deadLetters;
        log.warn({ projection: projection.name, deadLetters: out.deadLetters }, 'events dead-lettered (projection_dead_letters)');
      }
    } catch (err) {
      await client.query('ROLLBACK').catch((e: unknown) => (broken = e));
      months.clear();
      throw err;
    } finally {
      client.release(broken instanceof Error ? broken : undefined);
    }
  }

  async function follow(lock: HeldLock): Promise<void> {
    position = (await loadCheckpoint(pool, projection.name))?.position ?? START;
    const read = (after: Position) => {
      const p = opts.read ? opts.read(after, opts.batchSize) : store.readAll({ after, batchSize: opts.batchSize });
      p.catch(() => {}); // observed when awaited; a prefetch may be dropped
      return p;
    };
    let next: Promise<ReadAllBatch> | undefined = read(position);
    while (!stopped && !lock.lost) {
      const batch: ReadAllBatch = await (next ?? read(position));
      next = undefined;
      if (batch.events.length === 0) {
        await sleep(opts.pollMs);
        continue;
      }
      // Prefetch: reading the next batch overlaps writing this one.
      if (!batch.caughtUp) next = read(batch.next);
      await applyOne(batch, position);
      position = batch.next;
      if (batch.caughtUp) await sleep(opts.pollMs);
    }
  }

  const loop = (async () => {
    while (!stopped) {
      const lock = await acquireProjectionLock({
        databaseUrl: opts.databaseUrl,
        name: projection.name,
        pollMs: opts.lockPollMs,
        stopped: () => stopped,
        onError: (err) => log.warn({ projection: projection.name, err: (err as Error)?.message }, 'projection lock connection error'),
        sleep,
      });
      if (!lock) break;
      active = true;
      log.info({ projection: projection.name, pid: process.pid, at: new Date().toISOString() }, 'projection active (lock acquired)');
      try {
        await follow(lock);
      } catch (err) {
        const level = err instanceof CheckpointConflictError ? 'info' : 'warn';
        log[level]({ projection: projection.name, err: (err as Error)?.message, position: formatPosition(position) }, 'projection restarting from its checkpoint');
      } finally {
        active = false;
        await lock.release();
      }
      if (!stopped) await sleep(opts.pollMs);
    }
  })();

  return {
    status: () => ({ name: projection.name, active, position: formatPosition(position), applied, deadLetters }),
    async stop() {
      stopped = true;
      for (const s of [...sleepers]) s();
      await loop;
    },
  };
}
