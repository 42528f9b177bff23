import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { EventStoreDBClient } from '@eventstore/db-client';
import { validate as uuidValidate, version as uuidVersion } from 'uuid';
import { escapeOrg, esdbStreamName, parseEsdbStreamName, toExpectedRevision, esdbEventId, createEsdbEventStore } from './esdbEventStore.ts';
import { ANY, NO_STREAM, STREAM_EXISTS } from './eventStore.ts';
import { prepareEvents } from './envelope.ts';
import { InvalidEventError } from './errors.ts';

/**
 * The EventStoreDB adapter's pure parts. No EventStoreDB server can run on these machines: the
 * adapter is type-checked and unit-tested here, and its conformance suite
 * (esdbEventStore.int.test.ts) runs only where EVENTSTORE_URL is set.
 */
describe('esdb adapter helpers', () => {
  it('esdb stream names - round-trip orgs containing the separator and the escape character', () => {
    for (const org of ['acme', 'a-b', '50%', 'x%2Dy', '-', '%%--', 'ünï']) {
      for (const stream of ['audit', 'cmd-1', 'a-b-c', '']) {
        const name = esdbStreamName(org, stream);
        assert.equal(name.indexOf('-'), escapeOrg(org).length, `the first '-' separates org from stream in ${name}`);
        assert.deepEqual(parseEsdbStreamName(name), { org, stream }, name);
      }
    }
  });

  it('esdb stream names - one org prefix never selects another org (the $all filter relies on it)', () => {
    // `a` must not match the streams of org `a-b`: escaping keeps '-' out of every org prefix.
    assert.ok(!esdbStreamName('a-b', 'x').startsWith(esdbStreamName('a', '')));
    assert.ok(esdbStreamName('a', 'x').startsWith(esdbStreamName('a', '')));
  });

  it('esdb stream names - foreign names are not orghub streams, and never throw', () => {
    // Malformed escapes threw URIError out of every read before.
    for (const name of ['$et-x', '$$acme-x', 'nodash', '-x', '50%-off', 'ab%zz-x', '%E0%A4%A-x']) {
      assert.equal(parseEsdbStreamName(name), undefined, name);
    }
    // Well-formed escapes that escapeOrg would not produce must not pose as org "A" or "a-b".
    assert.equal(parseEsdbStreamName('%41-x'), undefined);
    assert.equal(parseEsdbStreamName('a%2db-x'), undefined);
    // Positive control: the canonical form parses.
    assert.deepEqual(parseEsdbStreamName('a%2Db-x'), { org: 'a-b', stream: 'x' });
  });

  it('esdb revisions - constants, -1 and integers map to the client; anything else is invalid', () => {
    assert.equal(toExpectedRevision(ANY), 'any');
    assert.equal(toExpectedRevision(NO_STREAM), 'no_stream');
    assert.equal(toExpectedRevision(STREAM_EXISTS), 'stream_exists');
    assert.equal(toExpectedRevision(-1), 'no_stream');
    assert.equal(toExpectedRevision(-1n), 'no_stream');
    assert.equal(toExpectedRevision(0), 0n);
    assert.equal(toExpectedRevision(41), 41n);
    assert.equal(toExpectedRevision(2n ** 60n), 2n ** 60n);
    for (const bad of [-2, -2n, 1.5, Number.NaN, 2 ** 60, 'latest' as never]) {
      assert.throws(() => toExpectedRevision(bad), InvalidEventError, String(bad));
    }
  });

  it('esdb ids - an idempotency key gives the same UUIDv5 for the same org and a different one per org', () => {
    const ev = (org: string, key?: string) => prepareEvents(org, 's', [{ type: 't', data: {}, metadata: { actor: 'u', ...(key ? { idempotencyKey: key } : {}) } }])[0];
    const a1 = esdbEventId('acme', ev('acme', 'k1'));
    assert.equal(esdbEventId('acme', ev('acme', 'k1')), a1, 'a retry gets the same id, so EventStoreDB drops it');
    assert.ok(uuidValidate(a1) && uuidVersion(a1) === 5);
    assert.notEqual(esdbEventId('globex', ev('globex', 'k1')), a1, 'the same key in another org is another event');
    assert.notEqual(esdbEventId('acme', ev('acme', 'k2')), a1);
    // Without a key the event keeps its own UUIDv7.
    const plain = ev('acme');
    assert.equal(esdbEventId('acme', plain), plain.id);
    assert.equal(uuidVersion(plain.id), 7);
  });
});

/** Stands in for the client's subscribeToAll: an async iterable that emits 'confirmation' when told. */
class FakeSubscription extends EventEmitter {
  private done?: () => void;
  async *[Symbol.asyncIterator]() {
    await new Promise<void>((r) => (this.done = r));
  }
  async unsubscribe() {
    this.done?.();
  }
}

describe('esdb adapter subscribe', () => {
  it('esdb subscribe - ready waits for the server to confirm the subscription', async () => {
    const subs: FakeSubscription[] = [];
    const client = {
      subscribeToAll: () => {
        const s = new FakeSubscription();
        subs.push(s);
        return s;
      },
      dispose: async () => {},
    } as unknown as EventStoreDBClient;
    const store = createEsdbEventStore({ connectionString: 'esdb://unused', client });
    const sub = store.subscribe({ from: 'end', handler: async () => {} });
    let ready = false;
    void sub.ready.then(() => (ready = true));
    // Let the subscription loop start and several turns pass: no confirmation, not ready.
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    assert.equal(subs.length, 1, 'the subscription was requested');
    assert.equal(ready, false, 'ready before the server confirmed');
    subs[0].emit('confirmation');
    await sub.ready;
    assert.equal(ready, true);
    await store.close();
  });
});
