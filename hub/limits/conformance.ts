import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { Limiter } from './limiter.ts';

/**
 * The behaviour every Limiter adapter must show. Each test uses its own random keys and node
 * names, so runs share one Redis and may run in parallel.
 */
export function runLimiterConformance(name: string, factory: () => Promise<Limiter> | Limiter): void {
  describe(`${name} limiter conformance`, () => {
    let lim: Limiter;
    before(async () => {
      lim = await factory();
    });
    after(async () => {
      await lim?.close();
    });
    const key = () => `conf:${randomUUID()}`;
    const node = () => `n-${randomUUID().slice(0, 8)}`;

    it('limits - a new bucket starts full and grants at most burst', async () => {
      const k = key();
      const g = await lim.take(k, 50, 1, { rate: 10, burst: 30 });
      assert.equal(g.granted, 30);
      const g2 = await lim.take(k, 5, 1, { rate: 10, burst: 30 });
      assert.equal(g2.granted, 0);
      assert.ok(g2.retryAfterMs >= 50 && g2.retryAfterMs <= 110, `retry after ${g2.retryAfterMs}`);
    });

    it('limits - refills at the rate, and minGrant holds back small grants', async () => {
      const k = key();
      assert.equal((await lim.take(k, 100, 1, { rate: 100, burst: 100 })).granted, 100);
      const small = await lim.take(k, 50, 20, { rate: 100, burst: 100 });
      assert.equal(small.granted, 0, 'fewer than minGrant tokens: nothing');
      assert.ok(small.retryAfterMs > 100 && small.retryAfterMs <= 210, `retry after ${small.retryAfterMs}`);
      const deadline = Date.now() + 3000;
      let got = 0;
      while (got === 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
        got = (await lim.take(k, 50, 20, { rate: 100, burst: 100 })).granted;
      }
      assert.ok(got >= 20 && got <= 50, `granted ${got}`);
    });

    it('limits - buckets are independent per key', async () => {
      const a = key();
      const b = key();
      assert.equal((await lim.take(a, 10, 1, { rate: 1, burst: 10 })).granted, 10);
      assert.equal((await lim.take(a, 1, 1, { rate: 1, burst: 10 })).granted, 0);
      assert.equal((await lim.take(b, 10, 1, { rate: 1, burst: 10 })).granted, 10, 'another key is unaffected');
    });

    it('limits - slots are capped across nodes and freed by release', async () => {
      const k = key();
      const n1 = node();
      const n2 = node();
      await lim.heartbeat(n1, new Map(), 10_000);
      await lim.heartbeat(n2, new Map(), 10_000);
      assert.equal(await lim.acquire(k, n1, 3), true);
      assert.equal(await lim.acquire(k, n2, 3), true);
      assert.equal(await lim.acquire(k, n2, 3), true);
      assert.equal(await lim.acquire(k, n1, 3), false, 'the fourth holder on either node is refused');
      assert.equal(await lim.count(k), 3);
      await lim.release(k, n2);
      assert.equal(await lim.acquire(k, n1, 3), true);
      assert.equal(await lim.count(k), 3);
      assert.equal(await lim.acquire(key(), n1, 3), true, 'another key is unaffected');
    });

    it('limits - acquireAll takes a holder in every set or, when one is at its cap, in none and names it', async () => {
      const org = key();
      const user = key();
      const other = key();
      const n1 = node();
      const n2 = node();
      await lim.heartbeat(n1, new Map(), 10_000);
      await lim.heartbeat(n2, new Map(), 10_000);
      assert.equal(await lim.acquireAll([{ key: org, max: 3 }, { key: user, max: 1 }], n1), -1);
      assert.equal(await lim.count(org), 1);
      assert.equal(await lim.count(user), 1);
      // The user is at its cap (the holder is on another node): nothing is taken, index 1 answered.
      assert.equal(await lim.acquireAll([{ key: org, max: 3 }, { key: user, max: 1 }], n2), 1);
      assert.equal(await lim.count(org), 1, 'the org set is untouched by the refusal');
      assert.equal(await lim.count(user), 1);
      // Positive control beside it: another user of the same org gets in, the org holds 2.
      assert.equal(await lim.acquireAll([{ key: org, max: 3 }, { key: other, max: 1 }], n2), -1);
      assert.equal(await lim.count(org), 2);
      assert.equal(await lim.acquireAll([{ key: org, max: 3 }, { key: key(), max: 1 }], n1), -1);
      // Both at their caps: the first in the list is named.
      assert.equal(await lim.acquireAll([{ key: org, max: 3 }, { key: user, max: 1 }], n1), 0);
      assert.equal(await lim.count(org), 3);
      assert.equal(await lim.count(user), 1);
      // A max of 0 is no cap; released holders make room again.
      await lim.release(user, n1);
      assert.equal(await lim.acquireAll([{ key: user, max: 1 }, { key: other, max: 0 }], n1), -1);
      assert.equal(await lim.count(other), 2);
      assert.equal(await lim.acquireAll([], n1), -1, 'nothing asked, nothing refused');
    });

    it('limits - acquireAll does not count the holders of a node whose heartbeat lapsed', async () => {
      const a = key();
      const b = key();
      const dead = node();
      const live = node();
      await lim.heartbeat(dead, new Map(), 200);
      await lim.heartbeat(live, new Map(), 10_000);
      assert.equal(await lim.acquireAll([{ key: a, max: 1 }, { key: b, max: 1 }], dead), -1);
      assert.equal(await lim.acquireAll([{ key: a, max: 1 }, { key: b, max: 1 }], live), 0, 'the dead node still holds both while its heartbeat is fresh');
      await new Promise((r) => setTimeout(r, 350));
      assert.equal(await lim.acquireAll([{ key: a, max: 1 }, { key: b, max: 1 }], live), -1);
      assert.equal(await lim.count(a), 1);
      assert.equal(await lim.count(b), 1);
    });

    it('limits - a node whose heartbeat lapsed stops counting', async () => {
      const k = key();
      const dead = node();
      const live = node();
      await lim.heartbeat(dead, new Map(), 200);
      await lim.heartbeat(live, new Map(), 10_000);
      assert.equal(await lim.acquire(k, dead, 2), true);
      assert.equal(await lim.acquire(k, dead, 2), true);
      assert.equal(await lim.acquire(k, live, 2), false);
      await new Promise((r) => setTimeout(r, 350));
      assert.equal(await lim.acquire(k, live, 2), true, 'the dead node no longer holds slots');
      assert.equal(await lim.count(k), 1);
    });

    it('limits - a heartbeat re-asserts the counts a node holds', async () => {
      const k = key();
      const n = node();
      await lim.heartbeat(n, new Map([[k, 2]]), 10_000);
      assert.equal(await lim.count(k), 2);
      assert.equal(await lim.acquire(k, n, 2), false);
      await lim.heartbeat(n, new Map([[k, 0]]), 10_000);
      assert.equal(await lim.count(k), 0);
    });
  });
}
