import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../errors.ts';
import { ConnLimits } from './connLimits.ts';
import { chunkFor, HOLD_MS, Lease } from './leases.ts';
import { bucketSpec, parseOrgOverrides, parseTierOverrides, TIER_DEFAULTS, TIERS, TierTable } from './tiers.ts';
import { LocalBucket } from './tokenBucket.ts';
import { overLimitAction } from '../mqtt/sessionLimits.ts';

describe('limits (pure)', () => {
  it('limits - tiers: defaults, tier overrides and org overrides merge field by field', () => {
    const t = new TierTable('standard', parseTierOverrides('{"free":{"publish":{"org":7}}}'), parseOrgOverrides('{"acme":{"tier":"free","publish":{"user":3}},"big":{"connections":{"org":9}}}'));
    assert.deepEqual(t.limitsOf('acme').publish, { connection: TIER_DEFAULTS.free.publish.connection, user: 3, org: 7 });
    assert.equal(t.tierOf('acme'), 'free');
    assert.deepEqual(t.limitsOf('big').connections, { org: 9, user: TIER_DEFAULTS.standard.connections.user });
    assert.deepEqual(t.limitsOf('other'), TIER_DEFAULTS.standard);
  });

  it('limits - bad override JSON is refused with the variable and path named', () => {
    assert.throws(() => parseOrgOverrides('{"acme":{"tier":"gold"}}'), (e: Error) => e instanceof ConfigError && /ORGHUB_LIMITS_ORGS\/acme\/tier/.test(e.message));
    assert.throws(() => parseOrgOverrides('{"a.b":{}}'), ConfigError);
    assert.throws(() => parseTierOverrides('{"free":{"publish":{"org":-1}}}'), /ORGHUB_LIMITS_TIERS/);
    assert.throws(() => parseTierOverrides('{nope'), /not valid JSON/);
  });

  it('limits - org buckets hold orgBurstSeconds of their rate, connection and user buckets burstSeconds; overrides set each apart', () => {
    const t = new TierTable('standard', parseTierOverrides('{"free":{"orgBurstSeconds":0.5}}'), parseOrgOverrides('{"acme":{"orgBurstSeconds":2,"commands":{"org":100}},"calm":{"tier":"free","burstSeconds":4}}'));
    const std = t.limitsOf('other');
    assert.equal(std.orgBurstSeconds, 0.25);
    assert.equal(std.burstSeconds, 2);
    assert.deepEqual(bucketSpec(std, 'org', 2000), { rate: 2000, burst: 500 });
    assert.deepEqual(bucketSpec(std, 'user', 2000), { rate: 2000, burst: 4000 });
    assert.deepEqual(bucketSpec(std, 'connection', 2000), { rate: 2000, burst: 4000 });
    assert.deepEqual(bucketSpec(std, 'org', 2), { rate: 2, burst: 1 }, 'at least one token');
    const acme = t.limitsOf('acme');
    assert.deepEqual([acme.orgBurstSeconds, acme.burstSeconds, acme.commands.org], [2, 2, 100], 'an org override changes the org burst alone');
    assert.deepEqual(bucketSpec(acme, 'org', 100), { rate: 100, burst: 200 });
    const calm = t.limitsOf('calm');
    assert.deepEqual([calm.orgBurstSeconds, calm.burstSeconds], [0.5, 4], 'the tier override and the org override merge field by field');
  });

  it('limits - in every tier an org burst is short, and one connection\'s burst still fits in its org\'s', () => {
    for (const tier of TIERS) {
      const l = TIER_DEFAULTS[tier];
      assert.deepEqual([l.orgBurstSeconds, l.burstSeconds], [0.25, 2], tier);
      for (const kind of ['publish', 'commands'] as const) {
        const conn = bucketSpec(l, 'connection', l[kind].connection).burst;
        assert.ok(conn <= bucketSpec(l, 'org', l[kind].org).burst, `${tier} ${kind}: a device's batch (${conn}) fits in the org's burst`);
      }
    }
  });

  it('limits - orgBurstSeconds out of bounds is refused with the variable and path named', () => {
    assert.throws(() => parseOrgOverrides('{"acme":{"orgBurstSeconds":0}}'), (e: Error) => e instanceof ConfigError && /ORGHUB_LIMITS_ORGS\/acme\/orgBurstSeconds must be >= 0.01/.test(e.message));
    assert.throws(() => parseTierOverrides('{"free":{"orgBurstSeconds":"1"}}'), /ORGHUB_LIMITS_TIERS\/free\/orgBurstSeconds must be number/);
    assert.throws(() => parseTierOverrides('{"free":{"orgBurstSeconds":3601}}'), /orgBurstSeconds must be <= 3600/);
    assert.deepEqual(parseOrgOverrides('{"acme":{"orgBurstSeconds":0.01}}'), { acme: { orgBurstSeconds: 0.01 } }, 'the bound itself passes');
  });

  it('limits - a lease chunk is leaseMs of the rate, at most half the burst, so two nodes can lease from a small org bucket', () => {
    assert.equal(chunkFor({ rate: 2000, burst: 500 }, 100), 200, 'default lease of a 0.25 s org bucket');
    assert.equal(chunkFor({ rate: 2000, burst: 500 }, 1000), 250, 'a long lease takes half the bucket, not all of it');
    assert.equal(chunkFor({ rate: 2000, burst: 4000 }, 1000), 2000, 'a 2 s bucket is not capped');
    assert.equal(chunkFor({ rate: 3, burst: 1 }, 100), 1, 'at least one token');
    assert.equal(chunkFor({ rate: 50, burst: 12.5 }, 1000), 6, 'whole tokens');
  });

  it('limits - a local bucket starts full, refills at its rate and says how long to wait', () => {
    let now = 0;
    const b = new LocalBucket(10, 20, () => now);
    for (let i = 0; i < 20; i++) assert.equal(b.wait(), 0), b.take();
    assert.equal(b.wait(), 100);
    now = 250;
    assert.equal(b.grant(10, 1), 2);
  });

  it('limits - a lease serves from memory, prefetches at half a chunk and asks the source once while empty', async () => {
    const asks: number[] = [];
    let grant = 10;
    const lease = new Lease('k', { rate: 100, burst: 100 }, chunkFor({ rate: 100, burst: 100 }, 100), async (_k, want) => (asks.push(want), { granted: grant, retryAfterMs: grant ? 0 : 500 }));
    await lease.settle();
    assert.deepEqual(asks, [10]);
    for (let i = 0; i < 6; i++) assert.equal(lease.wait(performance.now()), 0), lease.take();
    assert.equal(lease.wait(performance.now()), 0, 'at half a chunk a refill starts, the token is still served');
    await lease.settle();
    assert.equal(asks.length, 2);
    grant = 0;
    while (lease.wait(performance.now()) === 0) lease.take();
    await lease.settle();
    const w = lease.wait(performance.now());
    assert.ok(w > 400 && w <= 500, `wait ${w}`);
    assert.equal(lease.wait(performance.now()) > 0, true);
    assert.equal(asks.length, 3, 'one ask found the bucket empty; none again before the retry time');
  });

  it('limits - a lease keeps at most one chunk past HOLD_MS, so a refilled cluster bucket is not spent on top of old tokens', async () => {
    let empty = true;
    const asks: number[] = [];
    const lease = new Lease('k', { rate: 20, burst: 20 }, chunkFor({ rate: 20, burst: 20 }, 100), async (_k, want) => (asks.push(want), empty ? { granted: 0, retryAfterMs: 50 } : { granted: want, retryAfterMs: 0 }));
    const fill = async () => {
      empty = true;
      await lease.settle(); // the cluster bucket is empty: no asks again for 50 ms
      for (let i = 0; i < 12; i++) assert.ok(lease.wait(performance.now()) > 0);
      empty = false;
      assert.ok(lease.wait(performance.now() + 60) > 0); // the next ask covers the 13 refusals
      await lease.settle();
      assert.ok(asks.at(-1)! >= 13, `asked for ${asks.at(-1)}`);
    };
    const serve = (now: number) => {
      let n = 0;
      while (n < 50 && lease.wait(now) === 0) lease.take(), n++;
      return n;
    };
    await fill();
    assert.ok(serve(performance.now()) >= 13, 'fresh tokens are all served');
    await fill();
    // The same tokens held longer than HOLD_MS: one chunk (2) is left, plus what a refill may bring.
    empty = true;
    assert.equal(serve(performance.now() + HOLD_MS + 1), 2);
  });

  it('limits - the hierarchy takes from every level only when all have a token, and counts refusals toward abuse', () => {
    const hits: string[] = [];
    const conn = new LocalBucket(1000, 1000);
    const org = new LocalBucket(2, 2);
    const asLease = (b: LocalBucket) => ({ wait: () => b.wait(), take: (n?: number) => b.take(n), settle: async () => {} }) as unknown as Lease;
    const lim = new ConnLimits({ hit: (l) => void hits.push(l) }, 'ws', TIER_DEFAULTS.standard, 3, { pub: [conn, undefined, asLease(org)], cmd: [undefined, undefined, undefined] });
    assert.equal(lim.publish(), 0);
    assert.equal(lim.publish(), 0);
    for (let i = 0; i < 4; i++) assert.ok(lim.publish() > 0);
    assert.equal(conn.wait(998), 0, 'refusals at the org level spent no connection tokens');
    assert.deepEqual(hits, ['rate_publish', 'rate_publish', 'rate_publish', 'rate_publish']);
    assert.equal(lim.abusive(), true);
    assert.equal(lim.command(), 0, 'an unlimited level always passes');
  });

  it('limits - MQTT over-limit policy: QoS 0 dropped, MQTT 5 refused 0x97, 3.1.1 delayed, abuse closes', () => {
    assert.deepEqual(overLimitAction(0, 5, 'rate', 10, false), { action: 'drop' });
    assert.deepEqual(overLimitAction(1, 5, 'rate', 10, false), { action: 'refuse', code: 0x97 });
    assert.deepEqual(overLimitAction(1, 4, 'rate', 10, false), { action: 'delay', ms: 10 });
    assert.deepEqual(overLimitAction(1, 4, 'size', 0, false), { action: 'close' });
    assert.deepEqual(overLimitAction(0, 5, 'rate', 10, true), { action: 'close' });
  });
});
