import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Position, ReadAllBatch, RecordedEvent } from '../hub/eventstore/eventStore.ts';
import { createSharedReader } from './sharedReader.ts';

/** A log of `n` events in one transaction; a read returns the next `batchSize` after the cursor, and counts itself. */
function syntheticLog(n: number) {
  const reads: string[] = [];
  const read = async (after: Position, batchSize: number): Promise<ReadAllBatch> => {
    reads.push(`${after.pos}`);
    const events: RecordedEvent[] = [];
    for (let p = Number(after.pos) + 1; p <= n && events.length < batchSize; p++) {
      events.push({ id: `e${p}`, org: 'o', stream: 's', type: 't', schemaVersion: 1, data: {}, metadata: { actor: 'a' }, recordedAt: '', streamPosition: BigInt(p), globalPosition: BigInt(p), position: { tx: 1n, pos: BigInt(p) } });
    }
    return { events, next: events.length ? events[events.length - 1].position : after, caughtUp: events.length < batchSize };
  };
  return { read, reads };
}

const at = (pos: number): Position => ({ tx: 1n, pos: BigInt(pos) });

/** Reads from `from` until caught up; the positions read. */
async function follow(read: (after: Position, n: number) => Promise<ReadAllBatch>, from: number, batch: number): Promise<number> {
  let cursor = at(from);
  let got = 0;
  for (;;) {
    const b = await read(cursor, batch);
    got += b.events.length;
    if (b.caughtUp) return got;
    cursor = b.next;
  }
}

describe('sharedReader', () => {
  it('sharedReader - runners at the same position share one read of each batch', async () => {
    const log = syntheticLog(100);
    const shared = createSharedReader(log.read, { maxEntries: 4 });
    const [a, b] = [shared.reader(), shared.reader()];
    const [na, nb] = await Promise.all([follow(a, 0, 10), follow(b, 0, 10)]);
    assert.deepEqual([na, nb], [100, 100]);
    // 11 batches (the last one short) read once each, not twice
    assert.equal(log.reads.length, 11);
  });

  it('sharedReader - a runner far behind the others never makes them wait for room (a restart after a crash)', async () => {
    // Given two runners already far ahead and one restarted at the start of the log
    const log = syntheticLog(2000);
    const shared = createSharedReader(log.read, { maxEntries: 4, maxWaitMs: 10_000 });
    const [fast1, fast2, slow] = [shared.reader(), shared.reader(), shared.reader()];
    // When all three read to the end (the fast ones from 1500, the slow one from 0)
    const done = Promise.all([follow(fast1, 1500, 10), follow(fast2, 1500, 10), follow(slow, 0, 10)]);
    const deadline = new Promise<'stalled'>((r) => setTimeout(() => r('stalled'), 3000).unref());
    // Then they finish long before one wait for room (10 s) would have passed, each with every event
    const r = await Promise.race([done, deadline]);
    assert.notEqual(r, 'stalled', 'reads waited for room that only the slow runner could free');
    assert.deepEqual(r, [500, 500, 2000]);
    // And batches were still shared: fewer reads than the three runners would make alone (51 + 51 + 201)
    assert.ok(log.reads.length < 51 + 51 + 201, `${log.reads.length} reads`);
  });
});
