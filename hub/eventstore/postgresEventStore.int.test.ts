import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { randomUUID } from 'node:crypto';
import { runConformance } from './conformance.ts';
import { createPostgresEventStore } from './postgresEventStore.ts';
import { migrate } from './migrate.ts';
import { EventStoreUnavailableError } from './errors.ts';
import { HubError } from '../errors.ts';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/orghub';

before(async () => {
  await migrate({ databaseUrl: DATABASE_URL, quiet: true });
});

runConformance('postgres event store', () => createPostgresEventStore({ databaseUrl: DATABASE_URL, pollMs: 100 }));

/** A TCP proxy to Postgres that the test can cut and restore, standing in for a Postgres outage. */
function pgProxy(target: URL) {
  const sockets = new Set<net.Socket>();
  let server: net.Server | undefined;
  let port = 0;
  const listen = () =>
    new Promise<void>((resolve) => {
      server = net.createServer((down) => {
        const up = net.connect(Number(target.port || 5432), target.hostname);
        for (const s of [down, up]) {
          sockets.add(s);
          s.on('close', () => sockets.delete(s));
          s.on('error', () => s.destroy());
        }
        down.pipe(up).pipe(down);
      });
      server.listen(port, '127.0.0.1', () => {
        port = (server!.address() as net.AddressInfo).port;
        resolve();
      });
    });
  return {
    listen,
    get url() {
      const u = new URL(target);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      return u.toString();
    },
    async cut() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server!.close(r));
    },
  };
}

describe('postgres event store', () => {
  it('outage - appends should fail fast with unavailable and work again once Postgres is back', async () => {
    // Given a store connected through a proxy
    const proxy = pgProxy(new URL(DATABASE_URL));
    await proxy.listen();
    const errors: unknown[] = [];
    const store = createPostgresEventStore({ databaseUrl: proxy.url, onError: (e) => errors.push(e) });
    const org = `out${randomUUID().slice(0, 8)}`;
    const ev = { type: 'a', data: {}, metadata: { actor: 'u' } };
    try {
      await store.appendToStream(org, 's', [ev]);
      // When Postgres goes away
      await proxy.cut();
      const t0 = Date.now();
      // Then appends reject with `unavailable` within about 2 s, and nothing crashes
      await assert.rejects(store.appendToStream(org, 's', [ev]), (err: unknown) => err instanceof EventStoreUnavailableError && err instanceof HubError && err.code === 'unavailable');
      await assert.rejects(store.readStream(org, 's'), (err: unknown) => err instanceof HubError && err.code === 'unavailable');
      assert.ok(Date.now() - t0 < 2500, `failed after ${Date.now() - t0} ms`);
      // And once it is back, the same store appends again
      await proxy.listen();
      const res = await store.appendToStream(org, 's', [ev]);
      assert.equal(res.nextExpectedVersion, 1n);
    } finally {
      await store.close();
      await proxy.cut().catch(() => {});
    }
  });

  it('idempotency - the same key from two processes at once should record one event', async () => {
    // Given two stores with their own pools (as two hub nodes would have)
    const a = createPostgresEventStore({ databaseUrl: DATABASE_URL });
    const b = createPostgresEventStore({ databaseUrl: DATABASE_URL });
    const org = `race${randomUUID().slice(0, 8)}`;
    try {
      for (let round = 0; round < 5; round++) {
        // When both append the same keys concurrently, among other appends in their batches
        const key = `cmd-${round}`;
        const appends = [a, b, a, b].flatMap((s, i) => [
          s.appendToStream(org, 'cmds', [{ type: 'device.reboot', data: { i }, metadata: { actor: 'u', idempotencyKey: key } }]),
          s.appendToStream(org, `other-${round}-${i}`, [{ type: 'x', data: {}, metadata: { actor: 'u' } }]),
        ]);
        const results = await Promise.all(appends);
        // Then exactly one recorded it and every caller got its id
        const keyed = results.filter((_, i) => i % 2 === 0);
        assert.equal(keyed.filter((r) => !r.duplicate).length, 1, `round ${round}`);
        assert.equal(new Set(keyed.map((r) => r.ids[0])).size, 1);
      }
      assert.equal((await a.readStream(org, 'cmds')).length, 5);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('group commit - batches that touch the same streams in opposite orders should not deadlock', async () => {
    const a = createPostgresEventStore({ databaseUrl: DATABASE_URL });
    const b = createPostgresEventStore({ databaseUrl: DATABASE_URL });
    const org = `dl${randomUUID().slice(0, 8)}`;
    const streams = Array.from({ length: 20 }, (_, i) => `s-${i}`);
    try {
      for (const s of streams) await a.appendToStream(org, s, [{ type: 'x', data: 0, metadata: { actor: 'u' } }]);
      const ops: Promise<unknown>[] = [];
      for (let r = 0; r < 10; r++) {
        for (const s of streams) ops.push(a.appendToStream(org, s, [{ type: 'x', data: r, metadata: { actor: 'u' } }]));
        for (const s of [...streams].reverse()) ops.push(b.appendToStream(org, s, [{ type: 'x', data: r, metadata: { actor: 'u' } }]));
      }
      await Promise.all(ops);
      for (const s of streams) assert.equal((await a.readStream(org, s)).length, 21);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
