import pg from 'pg';
import { performance } from 'node:perf_hooks';
import { START, formatPosition, type EventStore, type Position, type ReadAllBatch } from '../hub/eventstore/eventStore.ts';
import type { Logger } from '../hub/log.ts';
import { LIVE, advanceCheckpointAndCommit, applyBatch, loadCheckpoint, CheckpointConflictError } from './apply.ts';
import { acquireProjectionLock, type HeldLock } from './lock.ts';
import type { Projection } from './projection.ts';
import type { BatchReader } from './sharedReader.ts';

/** Lock wait limit of a pipelined batch's transaction (see applyOne); a timeout restarts from the checkpoint. */
const PIPELINE_LOCK_TIMEOUT_MS = 10_000;

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
  /** Milliseconds spent applying batches (fold, SQL, commit) since start. */
  busyMs: number;
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
  let busyMs = 0;
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

  /**
   * One batch in one transaction. `previous` (pipelined projections only) is the batch before it,
   * still being written on another connection: this one writes its rows meanwhile, but creates no
   * partition and moves no checkpoint before that one has committed (its compare-and-set expects
   * the previous batch's end, so it fails, and the whole batch rolls back, if that one did not).
   * `writing` resolves once the handler wrote its first row (its partitions exist by then).
   */
  async function applyOne(batch: ReadAllBatch, prev: Position, previous?: Promise<void>, writing?: () => void): Promise<void> {
    const started = performance.now();
    const client = await pool.connect();
    let broken: unknown;
    try {
      // synchronous_commit off: a commit lost in a crash takes its checkpoint with it, so the batch is simply read again.
      // Pipelined batches get a lock timeout: a lock wait between two of them (an earlier batch's
      // partition creation behind a later batch's open insert) would otherwise never end.
      const pipelined = projection.independentBatches ? `; SET LOCAL lock_timeout = '${PIPELINE_LOCK_TIMEOUT_MS}ms'` : '';
      await client.query(`BEGIN; SET LOCAL ROLE ${opts.writerRole}; SET LOCAL synchronous_commit = off${pipelined}; SAVEPOINT batch`);
      const out = await applyBatch(client, projection, batch.events, LIVE, months, {
        savepointOpened: true,
        beforeNewPartition: previous && (() => previous),
        onWrite: writing,
      });
      writing?.();
      if (previous) await previous;
      await advanceCheckpointAndCommit(client, projection.name, projection.version, prev, batch.next, batch.events.length, out.deadLetters);
      position = batch.next;
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
      busyMs += performance.now() - started;
    }
  }

  async function follow(lock: HeldLock): Promise<void> {
    position = (await loadCheckpoint(pool, projection.name))?.position ?? START;
    // Where the next read starts: ahead of `position` (committed) while a pipelined batch is open.
    let cursor = position;
    const read = (after: Position) => {
      const p = opts.read ? opts.read(after, opts.batchSize) : store.readAll({ after, batchSize: opts.batchSize });
      p.catch(() => {}); // observed when awaited; a prefetch may be dropped
      return p;
    };
    // The batch being written on a second connection (independentBatches only), at most one.
    let open: Promise<void> | undefined;
    try {
      let next: Promise<ReadAllBatch> | undefined = read(cursor);
      while (!stopped && !lock.lost) {
        const batch: ReadAllBatch = await (next ?? read(cursor));
        next = undefined;
        if (batch.events.length === 0) {
          await sleep(opts.pollMs);
          continue;
        }
        // Prefetch: reading the next batch overlaps writing this one.
        if (!batch.caughtUp) next = read(batch.next);
        if (projection.independentBatches) {
          // Pipeline: this batch writes while the previous one finishes; the next starts once this
          // one wrote its first row (after its partitions exist) and the previous one committed.
          let wrote!: () => void;
          const writing = new Promise<void>((r) => (wrote = r));
          const previous = open;
          const p = applyOne(batch, cursor, previous, wrote);
          p.catch(() => {});
          open = p;
          await Promise.race([writing, p]);
          if (previous) await previous;
        } else {
          await applyOne(batch, cursor);
        }
        cursor = batch.next;
        if (batch.caughtUp) {
          if (open) await open;
          open = undefined;
          await sleep(opts.pollMs);
        }
      }
      if (open) await open;
    } finally {
      // Never leave a batch writing behind a released lock.
      if (open) await open.catch(() => {});
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
    status: () => ({ name: projection.name, active, position: formatPosition(position), applied, deadLetters, busyMs }),
    async stop() {
      stopped = true;
      for (const s of [...sleepers]) s();
      await loop;
    },
  };
}
