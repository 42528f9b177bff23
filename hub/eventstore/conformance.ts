import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { EventStore, NewEvent, RecordedEvent, AppendResult } from './eventStore.ts';
import { ANY, NO_STREAM, STREAM_EXISTS, formatPosition, readAllBatches, START } from './eventStore.ts';
import { ConcurrencyError } from './errors.ts';
import { HubError } from '../errors.ts';
import { isValidEnvelope, toEnvelope } from './envelope.ts';

/**
 * The behaviour every EventStore adapter must show. Each test uses its own random org and stream,
 * so runs share one database (or one EventStoreDB) and may run in parallel.
 */
export function runConformance(name: string, factory: () => Promise<EventStore> | EventStore): void {
  describe(`${name} conformance`, () => {
    let store: EventStore;
    before(async () => {
      store = await factory();
    });
    after(async () => {
      await store?.close();
    });

    const newOrg = () => `t${randomUUID().replaceAll('-', '').slice(0, 16)}`;
    const newStream = () => `device-${randomUUID().slice(0, 8)}`;
    const ev = (type: string, data: unknown, extra: Partial<NewEvent['metadata']> = {}): NewEvent => ({
      type,
      data,
      metadata: { actor: 'user-1', session: 's-1', node: 'node-a', correlationId: 'corr-1', ...extra },
    });

    async function rejectsConflict(p: Promise<unknown>): Promise<void> {
      await assert.rejects(p, (err: unknown) => {
        assert.ok(err instanceof ConcurrencyError, `expected ConcurrencyError, got ${String(err)}`);
        assert.ok(err instanceof HubError);
        assert.equal(err.code, 'conflict');
        return true;
      });
    }

    it('append - should read back the events in order with their envelope fields', async () => {
      // Given a fresh stream
      const org = newOrg();
      const stream = newStream();
      // When three events are appended at once
      const res = await store.appendToStream(org, stream, [ev('device.reboot', { reason: 'a' }), ev('device.config', { settings: { x: 1 } }), ev('fleet.ack', { commandId: 'c' })], { expectedVersion: NO_STREAM });
      // Then the result names them and the stream returns them in order
      assert.equal(res.nextExpectedVersion, 2n);
      assert.equal(res.ids.length, 3);
      assert.equal(res.positions.length, 3);
      assert.equal(res.duplicate, false);
      assert.ok(res.positions[0] < res.positions[1] && res.positions[1] < res.positions[2]);
      const read = await store.readStream(org, stream);
      assert.deepEqual(read.map((e) => e.type), ['device.reboot', 'device.config', 'fleet.ack']);
      assert.deepEqual(read.map((e) => e.id), res.ids);
      assert.deepEqual(read.map((e) => e.streamPosition), [0n, 1n, 2n]);
      assert.deepEqual(read.map((e) => e.globalPosition), res.positions);
      const first = read[0];
      assert.equal(first.org, org);
      assert.equal(first.stream, stream);
      assert.equal(first.schemaVersion, 1);
      assert.deepEqual(first.data, { reason: 'a' });
      assert.deepEqual(first.metadata, { actor: 'user-1', session: 's-1', node: 'node-a', correlationId: 'corr-1' });
      assert.match(first.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7/);
      assert.ok(Math.abs(Date.parse(first.recordedAt) - Date.now()) < 60_000);
      for (const e of read) assert.ok(isValidEnvelope(toEnvelope(e)), `envelope of ${e.id} matches the schema`);
      // And readStream honours from / maxCount
      assert.deepEqual((await store.readStream(org, stream, { from: 1, maxCount: 1 })).map((e) => e.type), ['device.config']);
      // And another org sees nothing of it
      assert.deepEqual(await store.readStream(newOrg(), stream), []);
    });

    it('append - should reject an envelope that fails the schema', async () => {
      await assert.rejects(store.appendToStream(newOrg(), newStream(), [{ type: 'bad type!', data: {}, metadata: { actor: 'u' } }]), (err: unknown) => err instanceof HubError && err.code === 'invalid');
      await assert.rejects(store.appendToStream(newOrg(), newStream(), [{ type: 'x', data: {}, metadata: {} as never }]), (err: unknown) => err instanceof HubError && err.code === 'invalid');
    });

    it('append - an invalid event among concurrent appends should fail only its own append', async () => {
      const org = newOrg();
      const results = await Promise.allSettled([
        store.appendToStream(org, 'a', [ev('x', 1)]),
        store.appendToStream(org, 'b', [ev('x', { s: 'nul\u0000' })]),
        store.appendToStream(org, 'c', [ev('x', 3)]),
        store.appendToStream(newOrg(), 'd', [ev('x', { reason: 'lone \ud800 surrogate' })]),
        store.appendToStream(newOrg(), 'e', [ev('x', 5)]),
      ]);
      assert.equal(results[0].status, 'fulfilled');
      assert.ok(results[1].status === 'rejected' && results[1].reason instanceof HubError && results[1].reason.code === 'invalid');
      assert.equal(results[2].status, 'fulfilled');
      assert.ok(results[3].status === 'rejected' && results[3].reason instanceof HubError && results[3].reason.code === 'invalid' && /not well-formed/.test(results[3].reason.message));
      assert.equal(results[4].status, 'fulfilled');
    });

    it('expected version - NO_STREAM should succeed on a fresh stream and fail on an existing one', async () => {
      const org = newOrg();
      const stream = newStream();
      await store.appendToStream(org, stream, [ev('a', 1)], { expectedVersion: NO_STREAM });
      await rejectsConflict(store.appendToStream(org, stream, [ev('a', 2)], { expectedVersion: NO_STREAM }));
      assert.equal((await store.readStream(org, stream)).length, 1);
    });

    it('expected version - STREAM_EXISTS should fail on a fresh stream and succeed on an existing one', async () => {
      const org = newOrg();
      const stream = newStream();
      await rejectsConflict(store.appendToStream(org, stream, [ev('a', 1)], { expectedVersion: STREAM_EXISTS }));
      await store.appendToStream(org, stream, [ev('a', 1)], { expectedVersion: ANY });
      const res = await store.appendToStream(org, stream, [ev('a', 2)], { expectedVersion: STREAM_EXISTS });
      assert.equal(res.nextExpectedVersion, 1n);
    });

    it('expected version - a number should match the last stream position only', async () => {
      const org = newOrg();
      const stream = newStream();
      await rejectsConflict(store.appendToStream(org, stream, [ev('a', 0)], { expectedVersion: 0 }));
      const r0 = await store.appendToStream(org, stream, [ev('a', 0), ev('a', 1)], { expectedVersion: -1 });
      assert.equal(r0.nextExpectedVersion, 1n);
      await rejectsConflict(store.appendToStream(org, stream, [ev('a', 2)], { expectedVersion: 0 }));
      const r1 = await store.appendToStream(org, stream, [ev('a', 2)], { expectedVersion: r0.nextExpectedVersion });
      assert.equal(r1.nextExpectedVersion, 2n);
      await rejectsConflict(store.appendToStream(org, stream, [ev('a', 3)], { expectedVersion: 5 }));
      assert.deepEqual((await store.readStream(org, stream)).map((e) => e.data), [0, 1, 2]);
    });

    it('concurrency - of 20 concurrent appends with the same expected version exactly one should win', async () => {
      // Given a stream at version 0
      const org = newOrg();
      const stream = newStream();
      await store.appendToStream(org, stream, [ev('a', 'seed')], { expectedVersion: NO_STREAM });
      // When 20 writers append expecting version 0 at once
      const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => store.appendToStream(org, stream, [ev('a', i)], { expectedVersion: 0 })));
      // Then one wins and the others get ConcurrencyError
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      assert.equal(won.length, 1);
      assert.equal(lost.length, 19);
      for (const l of lost) assert.ok(l.reason instanceof ConcurrencyError, String(l.reason));
      assert.equal((await store.readStream(org, stream)).length, 2);
    });

    it('group commit - wrong expected versions should fail only their own appends', async () => {
      // Given 50 streams at version 0
      const org = newOrg();
      const streams = Array.from({ length: 50 }, () => newStream());
      await Promise.all(streams.map((s) => store.appendToStream(org, s, [ev('a', 0)], { expectedVersion: NO_STREAM })));
      // When 50 appends run at once and every fifth expects a wrong version
      const results = await Promise.allSettled(streams.map((s, i) => store.appendToStream(org, s, [ev('a', 1)], { expectedVersion: i % 5 === 0 ? 7 : 0 })));
      // Then exactly those 10 fail, with ConcurrencyError, and the 40 others are recorded
      results.forEach((r, i) => {
        if (i % 5 === 0) assert.ok(r.status === 'rejected' && r.reason instanceof ConcurrencyError, `append ${i}`);
        else assert.equal(r.status, 'fulfilled', `append ${i}: ${r.status === 'rejected' ? String(r.reason) : ''}`);
      });
      const lengths = await Promise.all(streams.map(async (s) => (await store.readStream(org, s)).length));
      lengths.forEach((n, i) => assert.equal(n, i % 5 === 0 ? 1 : 2, `stream ${i}`));
    });

    it('group commit - appends to one stream in the same window should keep their order', async () => {
      const org = newOrg();
      const stream = newStream();
      const results = await Promise.all(Array.from({ length: 30 }, (_, i) => store.appendToStream(org, stream, [ev('a', i)], { expectedVersion: ANY })));
      const read = await store.readStream(org, stream);
      assert.equal(read.length, 30);
      assert.deepEqual(read.map((e) => e.data), Array.from({ length: 30 }, (_, i) => i));
      assert.deepEqual(results.map((r) => r.nextExpectedVersion), Array.from({ length: 30 }, (_, i) => BigInt(i)));
    });

    it('idempotency - the same key twice should record one event and return the original result', async () => {
      const org = newOrg();
      const stream = newStream();
      const first = await store.appendToStream(org, stream, [ev('device.reboot', { n: 1 }, { idempotencyKey: 'cmd-1' })]);
      const again = await store.appendToStream(org, stream, [ev('device.reboot', { n: 1 }, { idempotencyKey: 'cmd-1' })]);
      assert.equal(first.duplicate, false);
      assert.equal(again.duplicate, true);
      assert.deepEqual(again.ids, first.ids);
      assert.deepEqual(again.positions, first.positions);
      assert.equal(again.nextExpectedVersion, first.nextExpectedVersion);
      assert.equal((await store.readStream(org, stream)).length, 1);
      // The key is per org: another org may use it
      const other = await store.appendToStream(newOrg(), stream, [ev('device.reboot', { n: 1 }, { idempotencyKey: 'cmd-1' })]);
      assert.equal(other.duplicate, false);
    });

    it('idempotency - 10 concurrent appends with the same key should record exactly one event', async () => {
      const org = newOrg();
      const stream = newStream();
      const results = await Promise.all(Array.from({ length: 10 }, () => store.appendToStream(org, stream, [ev('device.reboot', {}, { idempotencyKey: 'k-par' })])));
      assert.equal(results.filter((r) => !r.duplicate).length, 1);
      const ids = new Set(results.map((r) => r.ids[0]));
      assert.equal(ids.size, 1);
      const read = await store.readStream(org, stream);
      assert.equal(read.length, 1);
      assert.equal(read[0].id, results[0].ids[0]);
    });

    it('readAll - should never skip or reorder a committed event under concurrent writers', async () => {
      // Given 8 writers appending 200 events each to their own streams of one org
      const org = newOrg();
      const seen: RecordedEvent[] = [];
      let cursor = START as typeof START | string;
      let writing = true;
      const reader = (async () => {
        // When a reader pages with small batches while they write
        while (writing) {
          const b = await store.readAll({ org, after: cursor, batchSize: 7 });
          seen.push(...b.events);
          cursor = formatPosition(b.next);
          if (b.caughtUp) await new Promise((r) => setTimeout(r, 2));
        }
      })();
      const writers = Array.from({ length: 8 }, async (_, w) => {
        const stream = `writer-${w}`;
        for (let i = 0; i < 200; i++) await store.appendToStream(org, stream, [ev('w', { w, i })], { expectedVersion: i === 0 ? NO_STREAM : i - 1 });
      });
      await Promise.all(writers);
      writing = false;
      await reader;
      // And finally drains
      for (let tries = 0; seen.length < 1600 && tries < 200; tries++) {
        for await (const b of readAllBatches(store, { org, after: cursor, batchSize: 50 })) {
          seen.push(...b.events);
          cursor = formatPosition(b.next);
        }
        if (seen.length < 1600) await new Promise((r) => setTimeout(r, 10));
      }
      // Then its sequence equals the full ordered list, without gaps or repeats
      const all: RecordedEvent[] = [];
      for await (const b of readAllBatches(store, { org, batchSize: 500 })) all.push(...b.events);
      assert.equal(all.length, 1600);
      assert.deepEqual(seen.map((e) => e.id), all.map((e) => e.id));
      // And each stream's events appear in stream order
      for (let w = 0; w < 8; w++) {
        const mine = all.filter((e) => e.stream === `writer-${w}`).map((e) => e.streamPosition);
        assert.deepEqual(mine, Array.from({ length: 200 }, (_, i) => BigInt(i)));
      }
    });

    it('readAll - should filter by stream prefix and type', async () => {
      const org = newOrg();
      await store.appendToStream(org, 'device-1', [ev('device.reboot', 1), ev('device.config', 2)]);
      await store.appendToStream(org, 'audit-1', [ev('audit.connect', 3)]);
      const devices: RecordedEvent[] = [];
      for await (const b of readAllBatches(store, { org, streamPrefix: 'device-', batchSize: 10 })) devices.push(...b.events);
      assert.deepEqual(devices.map((e) => e.data), [1, 2]);
      const reboots: RecordedEvent[] = [];
      for await (const b of readAllBatches(store, { org, types: ['device.reboot', 'audit.connect'], batchSize: 10 })) reboots.push(...b.events);
      assert.deepEqual(reboots.map((e) => e.data), [1, 3]);
    });

    it('subscribe - should deliver events appended after start, in order', async () => {
      // Given an org with an event before the subscription starts
      const org = newOrg();
      const stream = newStream();
      await store.appendToStream(org, stream, [ev('before', 0)]);
      const got: RecordedEvent[] = [];
      let done!: () => void;
      const finished = new Promise<void>((r) => (done = r));
      const sub = store.subscribe({
        org,
        from: 'end',
        batchSize: 5,
        handler: (events) => {
          got.push(...events);
          if (got.length >= 20) done();
        },
      });
      await sub.ready;
      // When 20 more are appended, some concurrently
      const results: AppendResult[] = [];
      for (let i = 0; i < 10; i++) results.push(await store.appendToStream(org, stream, [ev('after', i)]));
      results.push(...(await Promise.all(Array.from({ length: 10 }, (_, i) => store.appendToStream(org, `${stream}-p${i}`, [ev('after', 10 + i)])))));
      const timeout = setTimeout(done, 10_000);
      await finished;
      clearTimeout(timeout);
      await sub.stop();
      // Then exactly those 20 arrive, in the global order
      assert.equal(got.length, 20);
      assert.ok(got.every((e) => e.type === 'after'));
      assert.deepEqual(got.slice(0, 10).map((e) => e.data), Array.from({ length: 10 }, (_, i) => i));
      const all: RecordedEvent[] = [];
      for await (const b of readAllBatches(store, { org, batchSize: 100 })) all.push(...b.events);
      assert.deepEqual(got.map((e) => e.id), all.slice(1).map((e) => e.id));
    });
  });
}
