import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../log.ts';
import { createPostgresEventStore } from '../eventstore/postgresEventStore.ts';
import type { EventStore } from '../eventstore/eventStore.ts';
import { testOrg } from '../testing/hubProcess.ts';
import type { AuditType } from './audit.ts';
import { AUDIT_STREAM, createStoreAuditSink, UNAUTHENTICATED_ORG } from './storeAuditSink.ts';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/orghub';

/** The audit sink against a real Postgres event store: per-org quotas, dead letters, sanitising. */
describe('audit sink safety', () => {
  let store: EventStore;
  const lines: Record<string, any>[] = [];
  const log = createLogger('info', { write: (s: string) => void lines.push(JSON.parse(s)) });

  before(async () => {
    store = createPostgresEventStore({ databaseUrl: DATABASE_URL });
  });
  after(async () => {
    await store?.close();
  });

  it('audit sink safety - a flood under _unauthenticated with a small buffer should not drop another org\'s events', async () => {
    // Given a buffer of 100 (a quarter, 25, per org)
    const sink = createStoreAuditSink({ store, log, nodeId: 'unit', maxBuffer: 100, flushMs: 1000 });
    const orgB = testOrg('quota');
    const orgC = testOrg('quota');
    // When 500 refused connections and 60 events of a flooding org C are recorded before one flush,
    // interleaved with 10 events of org B
    for (let i = 0; i < 500; i++) {
      sink.record(undefined, 'session.rejected', { reason: 'token_invalid', transport: 'mqtt', i });
      if (i < 60) sink.record(orgC, 'publish.denied', { topic: `t/${i}`, transport: 'ws' }, { actor: 'c' });
      if (i % 50 === 0) sink.record(orgB, 'publish.denied', { topic: `b/${i / 50}`, transport: 'ws' }, { actor: 'b' });
    }
    // Then only the flooding sources lost events, each counted under its own label
    const s = sink.stats();
    assert.deepEqual(s.droppedByOrg, { [UNAUTHENTICATED_ORG]: 475, [orgC]: 35 });
    assert.equal(s.dropped, 510);
    assert.equal(s.backlog, 25 + 25 + 10);
    // And every one of B's events is recorded (read back from the store), and C kept its quota
    await sink.flushNow();
    assert.equal(sink.stats().backlog, 0);
    assert.deepEqual((await store.readStream(orgB, AUDIT_STREAM)).map((e) => (e.data as any).topic), Array.from({ length: 10 }, (_, i) => `b/${i}`));
    assert.equal((await store.readStream(orgC, AUDIT_STREAM)).length, 25);
    await sink.close();
  });

  it('audit sink safety - when the whole buffer is full, the org holding the most makes room', async () => {
    const sink = createStoreAuditSink({ store, log, nodeId: 'unit', maxBuffer: 100, maxPerOrg: 60, flushMs: 1000 });
    const [a, b, c] = [testOrg('full'), testOrg('full'), testOrg('full')];
    for (let i = 0; i < 60; i++) sink.record(a, 'limit.hit', { i });
    for (let i = 0; i < 40; i++) sink.record(b, 'limit.hit', { i });
    // full now; c's 5 events take room from a (the largest), not from b
    for (let i = 0; i < 5; i++) sink.record(c, 'limit.hit', { i });
    assert.deepEqual(sink.stats().droppedByOrg, { [a]: 5 });
    await sink.flushNow();
    assert.deepEqual([(await store.readStream(a, AUDIT_STREAM)).length, (await store.readStream(b, AUDIT_STREAM)).length, (await store.readStream(c, AUDIT_STREAM)).length], [55, 40, 5]);
    await sink.close();
  });

  it('audit sink safety - an event the store rejects for good is dead-lettered alone; its batch-mates are recorded and the backlog drains', async () => {
    const sink = createStoreAuditSink({ store, log, nodeId: 'unit', maxBuffer: 1000, flushMs: 1000 });
    const org = testOrg('dead');
    for (let i = 0; i < 5; i++) sink.record(org, 'limit.hit', { i });
    // an event type the envelope schema refuses: the same input always fails, so no retry can help
    sink.record(org, 'not a valid type' as AuditType, { i: 99 });
    for (let i = 5; i < 10; i++) sink.record(org, 'limit.hit', { i });
    await sink.flushNow();
    const s = sink.stats();
    assert.equal(s.backlog, 0, 'nothing is retried forever');
    assert.equal(s.deadLettered, 1);
    assert.deepEqual((await store.readStream(org, AUDIT_STREAM)).map((e) => (e.data as any).i), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const dl = lines.find((l) => /dead-lettered/.test(l.msg) && l.org === org);
    assert.ok(dl, 'the dead letter is logged');
    assert.equal(dl.level, 50);
    await sink.close();
  });

  it('audit sink safety - hostile client ids, user agents and reasons are recorded sanitised', async () => {
    const sink = createStoreAuditSink({ store, log, nodeId: 'unit', maxBuffer: 1000, flushMs: 1000 });
    const org = testOrg('hostile');
    const split = `${'a'.repeat(127)}\u{1F600}`.slice(0, 128); // a pair cut in half
    sink.record(org, 'session.rejected', { clientId: 'nul\u0000id', username: split, userAgent: 'ua\u001b[2J', reason: 'x\ud800y' }, { actor: 'act\u0000or' });
    await sink.flushNow();
    assert.equal(sink.stats().backlog, 0);
    const [ev] = await store.readStream(org, AUDIT_STREAM);
    assert.deepEqual(ev.data, { clientId: 'nul\\u0000id', username: `${'a'.repeat(127)}\ufffd`, userAgent: 'ua\\u001b[2J', reason: 'x\ufffdy' });
    assert.equal(ev.metadata.actor, 'act\\u0000or');
    await sink.close();
  });
  it('audit sink safety - an org\'s events are recorded in the order they happened, even when a flush outlasts the flush interval', async () => {
    // Given the real store behind a wrapper that holds the first append back for 300 ms (a slow
    // transaction), and a sink that flushes every 10 ms
    let held = 0;
    let firstStarted!: () => void;
    const started = new Promise<void>((r) => (firstStarted = r));
    const slow: EventStore = Object.assign(Object.create(store) as EventStore, {
      appendToStream: async (...args: Parameters<EventStore['appendToStream']>) => {
        if (held++ === 0) {
          firstStarted();
          await new Promise((r) => setTimeout(r, 300));
        }
        return store.appendToStream(...args);
      },
    });
    const sink = createStoreAuditSink({ store: slow, log, nodeId: 'unit', maxBuffer: 100, flushMs: 10 });
    const org = testOrg('order');
    // When an event is recorded, and two more while its flush is still running
    sink.record(org, 'limit.hit', { n: 1 });
    await started;
    sink.record(org, 'limit.hit', { n: 2 });
    await new Promise((r) => setTimeout(r, 50));
    sink.record(org, 'limit.hit', { n: 3 });
    // Then all three are recorded (positive control), in the order they were recorded
    const deadline = Date.now() + 5000;
    let got: number[] = [];
    while (Date.now() < deadline && got.length < 3) {
      got = (await store.readStream(org, AUDIT_STREAM)).map((e) => (e.data as { n: number }).n);
      if (got.length < 3) await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual(got, [1, 2, 3]);
    await sink.close();
  });
});
