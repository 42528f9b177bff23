import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cachedReadiness, type ReadinessCheck } from './opsApi.ts';

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

describe('readiness cache', () => {
  it('readiness cache - concurrent requests share one run, and answers within the TTL run nothing', async () => {
    let runs = 0;
    let release!: () => void;
    const check: ReadinessCheck = { name: 'db', check: () => (runs++, new Promise((r) => (release = () => r({ up: true })))) };
    const ready = cachedReadiness([check], 10_000);
    const many = Array.from({ length: 100 }, () => ready());
    await tick();
    assert.equal(runs, 1, '100 concurrent requests, one check');
    release();
    const answers = await Promise.all(many);
    assert.ok(answers.every((a) => a.ready && JSON.parse(a.body).checks.db.status === 'up'));
    for (let i = 0; i < 100; i++) await ready();
    assert.equal(runs, 1, 'cached within the TTL');
  });

  it('readiness cache - an informational check is named "down" but leaves the node ready; a required one does not', async () => {
    let natsUp = true;
    const ready = cachedReadiness([{ name: 'nats', check: async () => ({ up: natsUp }) }, { name: 'redis', informational: true, check: async () => ({ up: false }) }], 0);
    const first = await ready();
    assert.equal(first.ready, true);
    assert.deepEqual(JSON.parse(first.body), { status: 'ready', checks: { nats: { status: 'up' }, redis: { status: 'down' } } });
    natsUp = false;
    await tick(210); // past the time a failing answer is kept
    const second = await ready();
    assert.equal(second.ready, false, 'positive control: a required check still takes the node out');
    assert.equal(JSON.parse(second.body).status, 'not_ready');
  });

  it('readiness cache - a failing answer is rechecked soon, a passing one after the TTL; each check is named', async () => {
    let up = false;
    let runs = 0;
    const ready = cachedReadiness([{ name: 'nats', check: async () => (runs++, { up }) }, { name: 'audit', check: async () => ({ up: true, detail: { backlog: 0 } }) }], 300);
    const first = await ready();
    assert.equal(first.ready, false);
    assert.deepEqual(JSON.parse(first.body), { status: 'not_ready', checks: { nats: { status: 'down' }, audit: { status: 'up', backlog: 0 } } });
    up = true;
    await tick(250); // past the 200 ms kept for a failing answer, within the 300 ms TTL
    assert.equal((await ready()).ready, true);
    assert.equal(runs, 2);
    await ready();
    assert.equal(runs, 2, 'a passing answer is kept for the TTL');
    await tick(320);
    await ready();
    assert.equal(runs, 3);
  });

  it('readiness cache - a check that throws or hangs is reported down by name', async () => {
    const ready = cachedReadiness([{ name: 'boom', check: async () => { throw new Error('nope'); } }, { name: 'slow', check: () => new Promise(() => {}) }], 0, 50);
    const keepAlive = setTimeout(() => {}, 1000); // the check timeout is unref'd (it must not hold the hub open)
    const r = await ready();
    clearTimeout(keepAlive);
    assert.deepEqual(JSON.parse(r.body).checks, { boom: { status: 'down', error: 'nope' }, slow: { status: 'down', error: 'timeout' } });
  });
});
