import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SerialQueue } from './serial.ts';

function queue(maxPending = 10) {
  const log: string[] = [];
  let stopped = false;
  const q = new SerialQueue(maxPending, {
    onError: (err) => log.push(`error:${(err as Error).message}`),
    onOverflow: () => log.push('overflow'),
    stopped: () => stopped,
  });
  return { q, log, stop: () => (stopped = true) };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('mqtt serial queue', () => {
  it('order - runs in place while idle, and waits behind a pending task otherwise', async () => {
    const { q, log } = queue();
    q.run(() => void log.push('a'));
    assert.deepEqual(log, ['a'], 'synchronous when idle');
    let release!: () => void;
    q.run(() => new Promise<void>((r) => (release = () => (log.push('b'), r()))));
    q.run(() => void log.push('c'));
    assert.equal(q.idle, false);
    assert.deepEqual(log, ['a']);
    await tick();
    assert.deepEqual(log, ['a'], 'c waits for b');
    release();
    await tick();
    assert.deepEqual(log, ['a', 'b', 'c']);
    assert.equal(q.idle, true);
  });

  it('errors - a throw or a rejection is reported and later tasks still run', async () => {
    const { q, log } = queue();
    q.run(() => {
      throw new Error('sync');
    });
    q.run(() => Promise.reject(new Error('async')));
    q.run(() => void log.push('after'));
    await tick();
    assert.deepEqual(log, ['error:sync', 'error:async', 'after']);
  });

  it('overflow - more than maxPending waiting tasks calls onOverflow instead of queuing', async () => {
    const { q, log } = queue(2);
    q.track(new Promise<void>(() => {}));
    q.run(() => void log.push('1'));
    q.run(() => void log.push('2'));
    q.run(() => void log.push('3'));
    assert.deepEqual(log, ['overflow']);
  });

  it('stopped - queued tasks are skipped once the owner stopped', async () => {
    const { q, log, stop } = queue();
    let release!: () => void;
    q.track(new Promise<void>((r) => (release = r)));
    q.run(() => void log.push('x'));
    stop();
    release();
    await tick();
    assert.deepEqual(log, []);
  });
});
