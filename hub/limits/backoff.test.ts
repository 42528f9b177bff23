import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ABUSE_STREAK, BACKOFF_BASE_MS, BACKOFF_CAP_MS, BACKOFF_RESET_MS, RefusalBackoff } from './backoff.ts';
import { ConnLimits } from './connLimits.ts';
import { TIER_DEFAULTS } from './tiers.ts';
import { LocalBucket } from './tokenBucket.ts';

describe('refusal backoff (pure)', () => {
  it('backoff - should double the hold per refusal after the previous hold ended, up to the cap', () => {
    const b = new RefusalBackoff();
    let now = 0;
    const seen: number[] = [];
    for (let i = 0; i < 10; i++) {
      const ms = b.refuse(now, 2);
      seen.push(ms);
      now += ms; // the client comes back right when told
    }
    assert.deepEqual(seen, [10, 20, 40, BACKOFF_CAP_MS, BACKOFF_CAP_MS, BACKOFF_CAP_MS, BACKOFF_CAP_MS, BACKOFF_CAP_MS, BACKOFF_CAP_MS, BACKOFF_CAP_MS]);
    assert.equal(BACKOFF_CAP_MS, 50);
    assert.equal(b.streak, 10);
  });

  it('backoff - should answer a refusal inside a hold with the rest of it, without doubling', () => {
    const b = new RefusalBackoff();
    assert.equal(b.refuse(0, 1), BACKOFF_BASE_MS);
    assert.equal(b.holding(3), true);
    assert.equal(b.refuse(3, 1), 7);
    assert.equal(b.streak, 1);
    assert.equal(b.holding(BACKOFF_BASE_MS), false);
    assert.equal(b.refuse(BACKOFF_BASE_MS, 1), 2 * BACKOFF_BASE_MS);
  });

  it('backoff - should never answer less than the bucket itself needs', () => {
    assert.equal(new RefusalBackoff().refuse(0, 30), 30);
    assert.equal(new RefusalBackoff().refuse(0, 5000), BACKOFF_CAP_MS, 'capped');
  });

  it('backoff - should start a new streak after a quiet second past the last hold', () => {
    const b = new RefusalBackoff();
    let now = 0;
    for (let i = 0; i < 2; i++) now += b.refuse(now, 1);
    assert.equal(b.refuse(now + BACKOFF_RESET_MS - 1, 1), 40, 'within the reset window: still growing');
    now = b.until + BACKOFF_RESET_MS + 1;
    assert.equal(b.refuse(now, 1), BACKOFF_BASE_MS);
    assert.equal(b.streak, 1);
  });

  it('backoff - a connection gets growing retry times, counts frames sent while held, and turns abusive; HTTP keeps the bucket wait', () => {
    const svc = { hit: () => {} };
    const levels = () => ({ pub: [new LocalBucket(1, 1), undefined, undefined] as never, cmd: [undefined, undefined, undefined] as never });
    const ws = new ConnLimits(svc, 'ws', TIER_DEFAULTS.standard, 5, levels());
    assert.equal(ws.publish(), 0);
    const first = ws.publish();
    assert.ok(first >= BACKOFF_BASE_MS, `first refusal ${first}`);
    assert.equal(ws.holding(), true);
    assert.equal(ws.abusive(), false, 'one refusal is not abuse');
    for (let i = 0; i < 4; i++) assert.equal(ws.heldFrame(), false);
    assert.equal(ws.heldFrame(), true, 'refusals plus frames sent while held passed ORGHUB_LIMITS_ABUSE (5)');
    const http = new ConnLimits(svc, 'http', TIER_DEFAULTS.standard, 5, levels());
    assert.equal(http.publish(), 0);
    const w = http.publish();
    assert.ok(w > 0 && w <= 1000);
    assert.equal(http.holding(), false, 'no hold for HTTP: there is no connection to stop reading');
    const off = new ConnLimits(svc, 'ws', TIER_DEFAULTS.standard, 0, levels());
    off.publish();
    off.publish();
    for (let i = 0; i < 10; i++) assert.equal(off.heldFrame(), false, 'ORGHUB_LIMITS_ABUSE=0: never abusive');
    assert.equal(off.abusive(true), false);
  });

  it('backoff - ABUSE_STREAK holds in a row make a connection abusive even with few refusals', () => {
    const lim = new ConnLimits({ hit: () => {} }, 'mqtt', TIER_DEFAULTS.standard, 1_000_000, { pub: [new LocalBucket(0.001, 1), undefined, undefined], cmd: [undefined, undefined, undefined] });
    const b = (lim as unknown as { backoff: RefusalBackoff }).backoff;
    lim.publish();
    for (let i = 0; i < ABUSE_STREAK - 1; i++) {
      lim.publish();
      b.until = performance.now(); // the hold has just ended (the clock is performance.now(): end it by hand)
    }
    assert.equal(lim.abusive(), false);
    lim.publish();
    assert.equal(b.streak, ABUSE_STREAK);
    assert.equal(lim.abusive(), true);
  });
});
