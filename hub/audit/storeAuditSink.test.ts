import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../log.ts';
import { createPostgresEventStore } from '../eventstore/postgresEventStore.ts';
import { createStoreAuditSink } from './storeAuditSink.ts';
import { freePort } from '../testing/hubProcess.ts';

const pick = (s: { backlog: number; dropped: number }) => ({ backlog: s.backlog, dropped: s.dropped });

/** A loopback port nothing listens on (bound, then released). */
const closedPort = freePort;

/** A pino destination that keeps every line, parsed. */
function captureLog() {
  const lines: Record<string, any>[] = [];
  const log = createLogger('info', { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { log, lines };
}

describe('storeAuditSink', () => {
  it('storeAuditSink - with the store unreachable, events past maxBuffer should be counted as dropped and logged, never silently', async () => {
    // Given a real Postgres event store whose server cannot be reached, and a bound of 10
    const store = createPostgresEventStore({ databaseUrl: `postgres://postgres@127.0.0.1:${await closedPort()}/orghub`, connectTimeoutMs: 300 });
    const { log, lines } = captureLog();
    const sink = createStoreAuditSink({ store, log, nodeId: 'unit', maxBuffer: 10, maxPerOrg: 10, flushMs: 10 });

    // When 25 events are recorded
    for (let i = 0; i < 25; i++) sink.record('org-unit', 'publish.denied', { i }, { actor: 'd1' });

    // Then 10 wait, 15 are counted as dropped, and the drop is logged at error level
    assert.deepEqual(pick(sink.stats()), { backlog: 10, dropped: 15 });
    const full = lines.find((l) => /audit buffer full/.test(l.msg));
    assert.ok(full, JSON.stringify(lines));
    assert.equal(full.level, 50);
    assert.equal(full.maxBuffer, 10);
    assert.match(full.msg, /ORGHUB_AUDIT_BUFFER/);

    // When a flush fails against the unreachable store
    await sink.flushNow();

    // Then the events stay in the buffer (nothing more is lost), and the outage is logged once
    assert.deepEqual(pick(sink.stats()), { backlog: 10, dropped: 15 });
    const warn = lines.filter((l) => /not yet recorded/.test(l.msg));
    assert.equal(warn.length, 1);
    assert.equal(warn[0].level, 40);
    await sink.flushNow();
    assert.equal(lines.filter((l) => /not yet recorded/.test(l.msg)).length, 1, 'logged once per outage, not per retry');

    // And later events are still counted while the buffer is full; pre-auth events use the bound too,
    // and make room by taking it from the org that holds the most (org-unit)
    for (let i = 0; i < 5; i++) sink.record(undefined, 'session.rejected', { reason: 'token_expired' });
    assert.deepEqual(pick(sink.stats()), { backlog: 10, dropped: 20 });
    assert.deepEqual(sink.stats().droppedByOrg, { 'org-unit': 20 });

    // And shutdown reports what could not be recorded
    await sink.close();
    const lost = lines.find((l) => /not recorded at shutdown/.test(l.msg));
    assert.ok(lost);
    assert.equal(lost.lost, 10);
    await store.close();
  });

  it('storeAuditSink - under the bound nothing should be dropped and nothing logged at error level', async () => {
    const store = createPostgresEventStore({ databaseUrl: `postgres://postgres@127.0.0.1:${await closedPort()}/orghub`, connectTimeoutMs: 300 });
    const { log, lines } = captureLog();
    const sink = createStoreAuditSink({ store, log, nodeId: 'unit', maxBuffer: 10, maxPerOrg: 10, flushMs: 10 });
    for (let i = 0; i < 10; i++) sink.record('org-unit', 'limit.hit', { i });
    await sink.flushNow();
    assert.deepEqual(pick(sink.stats()), { backlog: 10, dropped: 0 });
    assert.equal(lines.filter((l) => /audit buffer full/.test(l.msg)).length, 0);
    await sink.close();
    await store.close();
  });
});
