import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createRefresher } from './refresher.ts';
import { restartDelayMs } from './opsListener.ts';

/** A clock and timers the test moves by hand. */
function fakeTime() {
  let t = 0;
  const timers: { at: number; fn: () => void; live: boolean }[] = [];
  return {
    now: () => t,
    setTimer: (fn: () => void, ms: number) => {
      const timer = { at: t + ms, fn, live: true };
      timers.push(timer);
      return { cancel: () => void (timer.live = false) };
    },
    advance(ms: number) {
      t += ms;
      for (const x of timers) if (x.live && x.at <= t) (x.live = false), x.fn();
    },
  };
}

describe('ops refresher', () => {
  it('ops refresher - many readers of a stale value share one ask; a fresh value is served without asking', () => {
    const time = fakeTime();
    let asks = 0;
    const r = createRefresher<number>({ freshForMs: () => 1000, ask: () => asks++, timeoutMs: 3000, ...time });
    const got: (number | undefined)[] = [];
    for (let i = 0; i < 500; i++) r.get((v) => got.push(v));
    assert.equal(asks, 1, '500 readers, one ask');
    assert.equal(r.waiting, 500);
    r.settle(42);
    assert.equal(got.length, 500);
    assert.deepEqual(new Set(got), new Set([42]));
    time.advance(999);
    r.get((v) => got.push(v));
    assert.equal(asks, 1, 'fresh: served from the copy');
    assert.equal(got.at(-1), 42);
    time.advance(1);
    r.get((v) => got.push(v));
    assert.equal(asks, 2, 'stale after freshForMs: asks again');
  });

  it('ops refresher - readers get undefined when the owner does not answer in time, and the next reader asks again', () => {
    const time = fakeTime();
    let asks = 0;
    const r = createRefresher<string>({ freshForMs: () => 1000, ask: () => asks++, timeoutMs: 300, ...time });
    const got: (string | undefined)[] = [];
    r.get((v) => got.push(v));
    r.get((v) => got.push(v));
    time.advance(299);
    assert.equal(got.length, 0, 'positive control: still waiting just before the timeout');
    time.advance(1);
    assert.equal(got.length, 2);
    assert.equal(got.filter((v) => v === undefined).length, 2, 'both readers told: no answer');
    r.get((v) => got.push(v));
    assert.equal(asks, 2);
    r.settle('late but here');
    assert.equal(got.at(-1), 'late but here');
  });

  it('ops refresher - freshness may depend on the value (a failing readiness is kept briefly)', () => {
    const time = fakeTime();
    let asks = 0;
    const r = createRefresher<boolean>({ freshForMs: (ok) => (ok ? 1000 : 200), ask: () => asks++, timeoutMs: 3000, ...time });
    r.get(() => {});
    r.settle(false);
    time.advance(200);
    r.get(() => {});
    assert.equal(asks, 2, 'failing copy: asked again after 200 ms');
    r.settle(true);
    time.advance(200);
    r.get(() => {});
    assert.equal(asks, 2, 'passing copy: kept');
  });

  it('ops restart - the delay doubles per crash in a row from 1 s and stops at 30 s', () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 50].map(restartDelayMs), [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  });
});
