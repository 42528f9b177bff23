import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createLogger } from '../log.ts';
import type { Principal } from '../auth/principal.ts';
import { LimitService, type Admission } from './limitService.ts';
import { slotKey } from './limiter.ts';
import { createRedisLimiter } from './redisLimiter.ts';
import { TierTable } from './tiers.ts';

/**
 * Connection admission of the LimitService on a real Redis: the org's and the user's slots are
 * taken in one script, all or nothing, and a refusal names the same limit as before (the org's
 * first). Two services share the Redis as two nodes would.
 */
describe('limits admission', () => {
  const prefix = `orghub-test:${randomUUID().slice(0, 8)}:`;
  const org = `adm-${randomUUID().slice(0, 8)}`;
  const other = `adm-${randomUUID().slice(0, 8)}`;
  const log = createLogger('silent');
  const services: LimitService[] = [];
  let a: LimitService;
  let b: LimitService;
  const make = async (nodeId: string) => {
    const cluster = createRedisLimiter(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', log, prefix);
    await cluster.ready();
    const s = new LimitService({
      enabled: true,
      tiers: new TierTable('standard', {}, { [org]: { connections: { org: 3, user: 2 } } }),
      cluster,
      nodeId,
      prefix,
      perIp: 2,
      abuseDenials: 0,
      leaseMs: 100,
      log,
    });
    services.push(s);
    return { s, cluster };
  };
  let counter: ReturnType<typeof createRedisLimiter>;
  const principal = (o: string, sub: string): Principal => ({ org: o, sub, roles: [], exp: Math.floor(Date.now() / 1000) + 600 });
  const count = (o: string, sub?: string) => counter.count(sub === undefined ? slotKey(prefix, 'org', o) : slotKey(prefix, 'user', o, sub));
  const ok = (x: Admission) => {
    assert.ok(x.ok, `admitted: ${JSON.stringify(x)}`);
    return x.slots;
  };

  before(async () => {
    ({ s: a, cluster: counter } = await make(`node-a-${randomUUID().slice(0, 6)}`));
    ({ s: b } = await make(`node-b-${randomUUID().slice(0, 6)}`));
    // Both nodes alive (their first heartbeat runs once Redis is ready) before anything is counted.
    for (const s of [a, b]) {
      const deadline = Date.now() + 5000;
      for (;;) {
        const held = ok(await s.admit(principal(other, 'probe')));
        const seen = await count(other, 'probe');
        s.release(held);
        if (seen === 1) break;
        assert.ok(Date.now() < deadline, 'node heartbeat seen');
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  });
  after(async () => {
    for (const s of services) await s.close();
  });

  it('limits - a user at their cap is refused connections_user and the org slot is not taken; another user of the org is admitted', async () => {
    const s1 = ok(await a.admit(principal(org, 'alice')));
    const s2 = ok(await b.admit(principal(org, 'alice')));
    assert.equal(await count(org, 'alice'), 2);
    assert.equal(await count(org), 2);
    assert.deepEqual(await a.admit(principal(org, 'alice')), { ok: false, limit: 'connections_user', max: 2 });
    assert.equal(await count(org), 2, 'the refusal took no org slot');
    assert.equal(await count(org, 'alice'), 2);
    // Positive control: another user still fits under the org's cap of 3.
    const s3 = ok(await b.admit(principal(org, 'bob')));
    assert.equal(await count(org), 3);
    // Now the org is full too: the org's limit is named first, and the user's slot is not taken.
    assert.deepEqual(await a.admit(principal(org, 'carol')), { ok: false, limit: 'connections_org', max: 3 });
    assert.equal(await count(org, 'carol'), 0);
    assert.deepEqual(await a.admit(principal(org, 'alice')), { ok: false, limit: 'connections_org', max: 3 }, 'both at their caps: the org is named');
    // Another org is unaffected (standard tier).
    a.release(ok(await a.admit(principal(other, 'alice'))));
    // Releasing gives both slots back, on either node.
    a.release(s1);
    b.release(s2);
    b.release(s3);
    const deadline = Date.now() + 3000;
    while ((await count(org)) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(await count(org), 0);
    assert.equal(await count(org, 'alice'), 0);
    a.release(ok(await a.admit(principal(org, 'carol'))));
  });

  it('limits - the per-IP cap holds across nodes and IPv4-mapped IPv6 counts as IPv4', async () => {
    const ip = `10.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}`;
    const s1 = ok(await a.admitIp(ip));
    const s2 = ok(await b.admitIp(`::ffff:${ip}`));
    assert.deepEqual(await a.admitIp(ip), { ok: false, limit: 'connections_ip', max: 2 });
    // Positive control: another address is admitted.
    a.release(ok(await a.admitIp(`${ip.slice(0, ip.lastIndexOf('.'))}.251`)));
    a.release(s1);
    b.release(s2);
    const deadline = Date.now() + 3000;
    let again: Admission = { ok: false, limit: 'connections_ip', max: 2 };
    while (!again.ok && Date.now() < deadline) {
      again = await a.admitIp(ip);
      if (!again.ok) await new Promise((r) => setTimeout(r, 10));
    }
    a.release(ok(again));
  });
});
