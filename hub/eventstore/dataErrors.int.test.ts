import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createPostgresEventStore } from './postgresEventStore.ts';
import { InvalidEventError } from './errors.ts';
import type { EventStore } from './eventStore.ts';
import { testOrg } from '../testing/hubProcess.ts';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/orghub';

/**
 * Issue 9: a data error fails only the append that caused it, never its group-commit batch-mates
 * (other orgs' appends in the same transaction), and it is answered `invalid`, not retried.
 */
describe('event store data errors', () => {
  let store: EventStore;
  let admin: pg.Client;
  const poison = `test.poison.${randomBytes(4).toString('hex')}`;
  const constraint = `test_poison_${randomBytes(4).toString('hex')}`;

  before(async () => {
    admin = new pg.Client({ connectionString: DATABASE_URL });
    await admin.connect();
    // Something Postgres rejects that passes every check in the hub: a CHECK constraint (SQLSTATE
    // 23514) on one event type that only this test uses. NOT VALID: existing rows are not scanned.
    await admin.query(`ALTER TABLE events ADD CONSTRAINT ${constraint} CHECK (type <> '${poison}') NOT VALID`);
    // a long window so every append of the test lands in one batch
    store = createPostgresEventStore({ databaseUrl: DATABASE_URL, groupCommitMs: 50 });
  });

  after(async () => {
    await store?.close();
    await admin?.query(`ALTER TABLE events DROP CONSTRAINT IF EXISTS ${constraint}`);
    await admin?.end();
  });

  it('event store data errors - a rejected append in a batch with 20 other orgs fails alone; the others commit', async () => {
    const orgs = Array.from({ length: 20 }, () => testOrg('de'));
    const bad = testOrg('de-bad');
    const before = store.stats!();
    // Given 20 good appends of 20 orgs and one the database rejects, submitted in the same window
    const results = await Promise.allSettled([
      ...orgs.slice(0, 10).map((org) => store.appendToStream(org, 's', [{ type: 'test.good', data: { org }, metadata: { actor: 't' } }])),
      store.appendToStream(bad, 's', [{ type: poison, data: { x: 1 }, metadata: { actor: 't' } }]),
      ...orgs.slice(10).map((org) => store.appendToStream(org, 's', [{ type: 'test.good', data: { org }, metadata: { actor: 't' } }])),
    ]);
    const after = store.stats!();
    // Then they shared one group-commit transaction (the precondition of the test)
    assert.equal(after.batches - before.batches, 1, 'all 21 appends were submitted as one batch');
    // And only the bad one failed, with `invalid` naming the constraint, and nothing failed as a whole
    const bad10 = results[10];
    assert.equal(bad10.status, 'rejected');
    const err = (bad10 as PromiseRejectedResult).reason;
    assert.ok(err instanceof InvalidEventError, String(err));
    assert.equal(err.code, 'invalid');
    assert.match(err.message, /SQLSTATE 23514/);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 20);
    assert.equal(after.failedBatches, before.failedBatches);
    assert.equal((after.dataErrors ?? 0) - (before.dataErrors ?? 0), 1);
    // And each good org's event is in the store (positive control), the bad org has nothing
    for (const org of orgs) assert.deepEqual((await store.readStream(org, 's')).map((e) => e.data), [{ org }]);
    assert.deepEqual(await store.readStream(bad, 's'), []);
  });

  it('event store data errors - a lone surrogate or NUL is refused before it is queued, with the path in the message', async () => {
    const org = testOrg('de');
    const before = store.stats!();
    await assert.rejects(store.appendToStream(org, 's', [{ type: 'test.good', data: { reason: 'x\ud800y' }, metadata: { actor: 't' } }]), (e: any) => e instanceof InvalidEventError && /\/data\/reason is not well-formed Unicode/.test(e.message));
    await assert.rejects(store.appendToStream(org, 's', [{ type: 'test.good', data: 1, metadata: { actor: 't\u0000' } }]), (e: any) => e instanceof InvalidEventError && /\/metadata\/actor must not contain U\+0000/.test(e.message));
    await assert.rejects(store.appendToStream(org, 'st\udc00', [{ type: 'test.good', data: 1, metadata: { actor: 't' } }]), (e: any) => e instanceof InvalidEventError && /stream name/.test(e.message));
    assert.equal(store.stats!().appends, before.appends, 'nothing reached the queue');
    // positive control: the same append with well-formed text is recorded
    await store.appendToStream(org, 's', [{ type: 'test.good', data: { reason: 'x\u{1F600}y' }, metadata: { actor: 't' } }]);
    assert.deepEqual((await store.readStream(org, 's')).map((e) => e.data), [{ reason: 'x\u{1F600}y' }]);
  });

  it('event store bounds - past an org\'s share of the queue its appends fail overloaded with retryAfterMs, while another org is served', async () => {
    // a 100 ms window holds the queue still, so the bound is hit deterministically
    const small = createPostgresEventStore({ databaseUrl: DATABASE_URL, groupCommitMs: 100, groupCommitQueuePerOrg: 2, groupCommitQueue: 3 });
    try {
      const [a, b, c] = [testOrg('ovl'), testOrg('ovl'), testOrg('ovl')];
      const ap = (org: string, i: number) => small.appendToStream(org, 's', [{ type: 'test.good', data: { i }, metadata: { actor: 't' } }]);
      const results = await Promise.allSettled([ap(a, 0), ap(a, 1), ap(a, 2), ap(b, 0), ap(c, 0)]);
      const codes = results.map((r) => (r.status === 'fulfilled' ? 'ok' : (r.reason as any).code));
      // a's third is over a's share (2); b fits (queue total 3); c is over the whole queue
      assert.deepEqual(codes, ['ok', 'ok', 'overloaded', 'ok', 'overloaded']);
      const err = (results[2] as PromiseRejectedResult).reason;
      assert.equal(err.retryAfterMs, 100);
      assert.match(err.message, /ORGHUB_GROUP_COMMIT_QUEUE_PER_ORG/);
      assert.match((results[4] as PromiseRejectedResult).reason.message, /ORGHUB_GROUP_COMMIT_QUEUE\)/);
      assert.equal(small.stats!().overloaded, 2);
      assert.deepEqual((await small.readStream(a, 's')).map((e) => e.data), [{ i: 0 }, { i: 1 }]);
      assert.equal((await small.readStream(b, 's')).length, 1);
    } finally {
      await small.close();
    }
  });
});
