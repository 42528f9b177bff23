import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPostgresEventStore } from '../hub/eventstore/postgresEventStore.ts';
import { START, formatPosition, type EventStore, type Position, type RecordedEvent } from '../hub/eventstore/eventStore.ts';
import { testOrg } from '../hub/testing/hubProcess.ts';
import { createPgEventReader, type PgEventReader } from './pgEventReader.ts';
import { createSharedReader } from './sharedReader.ts';
import { createTestDatabase, type TestDatabase } from './testing.ts';

/**
 * The projector's reader must see exactly what the event store's readAll sees: the same events, in
 * the same order, with the same fields, even while writers commit out of sequence order.
 */
describe('projections - readers', () => {
  let db: TestDatabase;
  let store: EventStore;
  let reader: PgEventReader;
  before(async () => {
    db = await createTestDatabase('readers');
    store = createPostgresEventStore({ databaseUrl: db.url });
    reader = createPgEventReader({ databaseUrl: db.url });
  });
  after(async () => {
    await reader?.close();
    await store?.close();
    await db?.drop();
  });

  it('should return the same sequence as store.readAll under concurrent writers, shared or not', async () => {
    const orgs = [testOrg('rd'), testOrg('rd')];
    const page = async (read: (after: Position) => Promise<{ events: RecordedEvent[]; next: Position; caughtUp: boolean }>, stop: (seen: number) => boolean) => {
      const seen: RecordedEvent[] = [];
      let pos = START;
      for (;;) {
        const b = await read(pos);
        seen.push(...b.events);
        pos = b.next;
        if (b.caughtUp && stop(seen.length)) {
          const last = await read(pos);
          seen.push(...last.events);
          if (last.caughtUp && last.events.length === 0) return seen;
          pos = last.next;
        }
      }
    };
    let writing = true;
    const writers = Promise.all(Array.from({ length: 6 }, async (_, w) => {
      for (let i = 0; i < 40; i++) {
        await store.appendToStream(orgs[w % 2], `s-${w}`, [{ type: 'audit.limit.hit', data: { w, i, s: 'é"\\' }, metadata: { actor: `a${w}`, session: 'x' } }]);
      }
    })).then(() => (writing = false));
    // two runners sharing one reader, as the projections of one process do
    const shared = createSharedReader(reader.read, { maxEntries: 4 });
    const [first, second] = [shared.reader(), shared.reader()];
    const [viaStore, viaReader, viaShared, viaShared2] = await Promise.all([
      page((after) => store.readAll({ after, batchSize: 7 }), (n) => !writing && n >= 240),
      page((after) => reader.read(after, 7), (n) => !writing && n >= 240),
      page((after) => first(after, 7), (n) => !writing && n >= 240),
      page((after) => second(after, 7), (n) => !writing && n >= 240),
    ]);
    await writers;
    // Rows become readable only below the cluster-wide snapshot xmin, which a transaction of another
    // test (another database, same server) may hold back for a moment: wait for all 240, with a deadline.
    let full: RecordedEvent[] = [];
    for (const deadline = Date.now() + 20_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 100))) {
      full = await page((after) => store.readAll({ after, batchSize: 1000 }), () => true);
      if (full.length >= 240) break;
    }
    assert.equal(full.length, 240);
    const key = (e: RecordedEvent) => `${formatPosition(e.position)}|${e.id}|${e.org}|${e.stream}|${e.streamPosition}|${e.type}|${e.recordedAt}|${JSON.stringify(e.data)}|${JSON.stringify(e.metadata)}`;
    assert.deepEqual(viaStore.map(key), full.map(key));
    assert.deepEqual(viaReader.map(key), full.map(key));
    assert.deepEqual(viaShared.map(key), full.map(key));
    assert.deepEqual(viaShared2.map(key), full.map(key));
  });
});
