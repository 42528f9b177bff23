import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DrainGate } from './drainGate.ts';

function deferred() {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

describe('mqtt drain gate', () => {
  it('drain gate - idle waits for tracked work, including work that fails', async () => {
    const g = new DrainGate();
    const a = deferred();
    const b = deferred();
    void g.track(a.promise);
    g.track(b.promise).catch(() => {});
    assert.equal(g.inFlight, 2);
    let idle: boolean | undefined;
    const waiting = g.idle(Date.now() + 5000).then((v) => (idle = v));
    a.resolve();
    await a.promise;
    assert.equal(idle, undefined, 'still waiting for the second');
    b.reject(new Error('append failed'));
    await waiting;
    assert.equal(idle, true);
    assert.equal(g.inFlight, 0);
  });

  it('drain gate - idle and flushed give up at the deadline and say so', async () => {
    const g = new DrainGate();
    void g.track(new Promise(() => {}));
    g.flushLater(new Promise(() => {}));
    const t0 = Date.now();
    assert.equal(await g.idle(t0 + 50), false);
    assert.equal(await g.flushed(t0 + 100), false);
    assert.ok(Date.now() - t0 < 1000);
  });

  it('drain gate - flushed waits for writes; draining is set by close', async () => {
    const g = new DrainGate();
    assert.equal(g.draining, false);
    assert.equal(await g.flushed(Date.now()), true, 'nothing to flush');
    const w = deferred();
    g.flushLater(w.promise);
    let done = false;
    const waiting = g.flushed(Date.now() + 5000).then((v) => (done = v));
    await Promise.resolve();
    assert.equal(done, false);
    w.resolve();
    await waiting;
    assert.equal(done, true);
    g.close();
    assert.equal(g.draining, true);
  });
});
