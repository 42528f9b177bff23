import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createGroupCommit } from './groupCommit.ts';

interface Item {
  id: number;
  stream: string;
  key?: string;
}

/** A group commit whose flush records each batch and completes only when the test says so. */
function harness(concurrency: number) {
  const batches: Item[][] = [];
  const finish: Array<() => void> = [];
  const gc = createGroupCommit<Item, number>({
    windowMs: 0,
    maxBatch: 100,
    concurrency,
    flush: (items) => {
      batches.push(items);
      return new Promise((resolve) => finish.push(() => resolve(items.map((i) => i.id))));
    },
    conflictKeys: (i) => (i.key ? [i.key] : []),
    lockKeys: (i) => [i.stream],
  });
  const tick = () => new Promise((r) => setTimeout(r, 5));
  return { gc, batches, finish, tick };
}

describe('group commit', () => {
  it('group commit - a stream held by a batch in flight waits; other streams go ahead in the next batch', async () => {
    const { gc, batches, finish, tick } = harness(4);
    const results: number[] = [];
    const submit = (i: Item) => gc.submit(i).then((r) => results.push(r));
    const all = [submit({ id: 1, stream: 'a' }), submit({ id: 2, stream: 'b' })];
    await tick();
    assert.deepEqual(batches.map((b) => b.map((i) => i.id)), [[1, 2]]);
    all.push(submit({ id: 3, stream: 'a' }), submit({ id: 4, stream: 'c' }), submit({ id: 5, stream: 'a' }));
    await tick();
    // 3 and 5 (stream a) wait for batch 1; 4 (stream c) does not
    assert.deepEqual(batches.map((b) => b.map((i) => i.id)), [[1, 2], [4]]);
    finish[0]();
    await tick();
    assert.deepEqual(batches.map((b) => b.map((i) => i.id)), [[1, 2], [4], [3, 5]]);
    finish[1]();
    finish[2]();
    await Promise.all(all);
    assert.deepEqual(results.sort(), [1, 2, 3, 4, 5]);
    assert.equal(gc.pending, 0);
  });

  it('group commit - a held request keeps the later requests of its stream behind it (order per stream)', async () => {
    const { gc, batches, finish, tick } = harness(4);
    const all = [gc.submit({ id: 1, stream: 's', key: 'k' })];
    await tick();
    // 2 repeats key k (held by batch 1), 3 is on the same stream after it: both wait, in order
    all.push(gc.submit({ id: 2, stream: 's2', key: 'k' }), gc.submit({ id: 3, stream: 's2' }), gc.submit({ id: 4, stream: 'x' }));
    await tick();
    assert.deepEqual(batches.map((b) => b.map((i) => i.id)), [[1], [4]]);
    finish[0]();
    await tick();
    assert.deepEqual(batches[2].map((i) => i.id), [2, 3]);
    finish[1]();
    finish[2]();
    await Promise.all(all);
  });

  it('group commit - requests with the same conflict key never share a batch', async () => {
    const { gc, batches, finish, tick } = harness(1);
    const all = [gc.submit({ id: 1, stream: 'a', key: 'k' }), gc.submit({ id: 2, stream: 'b', key: 'k' }), gc.submit({ id: 3, stream: 'c' })];
    await tick();
    assert.deepEqual(batches.map((b) => b.map((i) => i.id)), [[1, 3]]);
    finish[0]();
    await tick();
    assert.deepEqual(batches.map((b) => b.map((i) => i.id)), [[1, 3], [2]]);
    finish[1]();
    await Promise.all(all);
  });

  it('group commit - a failed flush rejects its own batch only, and releases its streams', async () => {
    const batches: Item[][] = [];
    let calls = 0;
    const gc = createGroupCommit<Item, number>({
      windowMs: 0,
      maxBatch: 100,
      concurrency: 2,
      flush: async (items) => {
        batches.push(items);
        if (calls++ === 0) throw new Error('boom');
        return items.map((i) => i.id);
      },
      lockKeys: (i) => [i.stream],
    });
    const first = gc.submit({ id: 1, stream: 'a' });
    await assert.rejects(first, /boom/);
    assert.equal(await gc.submit({ id: 2, stream: 'a' }), 2);
    await gc.drain();
    assert.deepEqual(batches.map((b) => b.map((i) => i.id)), [[1], [2]]);
  });
});
