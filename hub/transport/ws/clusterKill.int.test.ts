import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createTestIssuer, type TestIssuer } from '../../testing/issuer.ts';
import { freePort, startHubProcess, testOrg, type HubProcess } from '../../testing/hubProcess.ts';
import { natsServer, type NatsServer } from '../../testing/natsClient.ts';
import { assertAckedRecorded, CommandWorker, RoamingPublisher as Publisher, RoamingSocket, waitUntil } from '../../testing/roamingClients.ts';

/**
 * The local cluster test (docs/operations.md "Cluster test"): three nats-server processes routed on
 * loopback, two hub nodes given all three NATS urls, and traffic on both hubs: WebSocket
 * subscribers, publishers, and keyed commands with client retries. Then, during traffic, the NATS
 * node the surviving hub is connected to and the other hub are both killed with SIGKILL.
 * Proves: the dead hub's clients reconnect to the survivor (by themselves, as real clients do),
 * fan-out continues there (every message acked after the last subscriber was back reaches every
 * subscriber), and no acked command is lost (each acked key is in the store once, under the id its
 * ack named, and a retry with the same key answers that id).
 */
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/orghub';
const SUBSCRIBERS = 4;
const PUBLISHERS = 2;
const WORKERS = 4;

/** A subscriber to `feed/#` that resubscribes wherever it reconnects; keeps the sequence numbers it got per publisher. */
class Subscriber {
  readonly got = new Map<string, Set<number>>();
  /** When (client clock) its current subscription was confirmed. */
  subscribedAt = 0;
  readonly sock: RoamingSocket;
  constructor(name: string, urls: () => string[], token: string) {
    this.sock = new RoamingSocket(name, urls, token, {
      onOpen: async (s) => {
        const a = await s.request(`sub-${Date.now()}`, { op: 'sub', topic: 'feed/#' });
        if (a?.op !== 'ok') throw new Error(`subscribe refused: ${JSON.stringify(a)}`);
        this.subscribedAt = Date.now();
      },
      onFrame: (f) => {
        if (f.op !== 'msg') return;
        const from = String(f.topic).split('/')[1]!;
        if (!this.got.has(from)) this.got.set(from, new Set());
        this.got.get(from)!.add(f.data.seq);
      },
    });
  }
}

/** The NATS node (index) whose /connz lists a client named `orghub <nodeId>`. */
async function natsNodeOf(monitorPorts: number[], nodeId: string): Promise<number> {
  for (let i = 0; i < monitorPorts.length; i++) {
    const connz = (await (await fetch(`http://127.0.0.1:${monitorPorts[i]}/connz`)).json()) as { connections?: { name?: string }[] };
    if (connz.connections?.some((c) => c.name === `orghub ${nodeId}`)) return i;
  }
  return -1;
}

describe('cluster kill', () => {
  let issuer: TestIssuer;
  const nats: NatsServer[] = [];
  const hubs: HubProcess[] = [];
  const stops: (() => unknown)[] = [];
  let pool: pg.Pool;

  before(async () => {
    issuer = await createTestIssuer();
    pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
  });
  after(async () => {
    await Promise.all(stops.map((s) => s()));
    await Promise.all(hubs.map((h) => h.stop('SIGKILL')));
    for (const n of nats) await n.kill();
    await pool.end();
  });

  it('cluster kill - with one NATS node and one hub killed during traffic, clients move to the survivor, fan-out continues and no acked command is lost', { timeout: 90_000 }, async (t) => {
    const t0 = Date.now();
    // Given three routed NATS nodes with monitoring, and two hubs that know all three
    const clientPorts = [await freePort(), await freePort(), await freePort()];
    const routePorts = [await freePort(), await freePort(), await freePort()];
    const monitorPorts = [await freePort(), await freePort(), await freePort()];
    const routes = routePorts.map((p) => `nats://127.0.0.1:${p}`).join(',');
    for (let i = 0; i < 3; i++) {
      const n = await natsServer(clientPorts[i], ['--cluster_name', 'orghub-kill', '--cluster', `nats://127.0.0.1:${routePorts[i]}`, '--routes', routes, '-m', String(monitorPorts[i])]);
      await n.start();
      nats.push(n);
    }
    const natsUrl = nats.map((n) => n.url).join(',');
    const ids = ['a', 'b'].map((x) => `kill-${x}-${randomBytes(3).toString('hex')}`);
    // Limits off: the test is about failure, not about buckets (like the other kill tests).
    const started = await Promise.all(ids.map((id) => startHubProcess({ ...issuer.env, NATS_URL: natsUrl, ORGHUB_NODE_ID: id, ORGHUB_LIMITS: 'off' }, { timeoutMs: 45_000 })));
    hubs.push(...started);
    const urls = () => started.map((h) => h.wsUrl);
    t.diagnostic(`cluster up in ${Date.now() - t0} ms`);

    // And traffic on both hubs
    const org = testOrg('ckill');
    const subs: Subscriber[] = [];
    const pubs: Publisher[] = [];
    const workers: CommandWorker[] = [];
    for (let i = 0; i < SUBSCRIBERS; i++) subs.push(new Subscriber(`s${i}`, urls, await issuer.token(org, `s${i}`)));
    for (let i = 0; i < PUBLISHERS; i++) pubs.push(new Publisher(`p${i}`, urls, await issuer.token(org, `p${i}`), `feed/p${i}`));
    for (let i = 0; i < WORKERS; i++) workers.push(new CommandWorker(`w${i}`, urls, await issuer.token(org, `w${i}`)));
    stops.push(...subs.map((s) => () => s.sock.stop()), ...pubs.map((p) => () => p.stop()), ...workers.map((w) => () => w.stop()));
    await Promise.all([...subs.map((s, i) => s.sock.connect(i % 2)), ...pubs.map((p, i) => p.sock.connect(i % 2)), ...workers.map((w, i) => w.sock.connect(i % 2))]);
    for (const p of pubs) p.start();
    for (const w of workers) w.start();
    const ackedNow = () => workers.reduce((n, w) => n + w.acked.size, 0);
    const seen = (s: Subscriber, p: Publisher) => s.got.get(p.name)?.size ?? 0;
    // Positive control before the kill: commands are acked on both hubs, and every subscriber gets both publishers' messages across the cluster
    await waitUntil('commands acked and messages crossing hubs', () => ackedNow() >= 60 && subs.every((s) => pubs.every((p) => seen(s, p) >= 20)), 30_000);

    // When the hub b and the NATS node hub a is connected to are killed at once
    const survivor = 0;
    const victim = 1;
    const natsVictim = await natsNodeOf(monitorPorts, ids[survivor]!);
    assert.ok(natsVictim >= 0, 'the surviving hub is connected to one of the three NATS nodes');
    const onVictim = [...subs.map((s) => s.sock), ...pubs.map((p) => p.sock), ...workers.map((w) => w.sock)].filter((s) => s.node === victim).length;
    assert.ok(onVictim >= 3, 'clients were on the hub that is killed');
    const beforeKill = ackedNow();
    const tKill = Date.now();
    await Promise.all([nats[natsVictim]!.kill(), started[victim]!.stop('SIGKILL')]);

    // Then every client is back, on the survivor
    const everyone = [...subs.map((s) => s.sock), ...pubs.map((p) => p.sock), ...workers.map((w) => w.sock)];
    await waitUntil('every client on the surviving hub', () => everyone.every((s) => s.node === survivor && s.isOpen), 20_000);
    const tBack = Date.now();
    // And fan-out continues there: messages published after the last subscriber came back reach every subscriber
    const lastResub = Math.max(...subs.map((s) => s.subscribedAt));
    const postKill = (p: Publisher) => p.acked.filter((a) => a.sentAt > lastResub).map((a) => a.seq);
    await waitUntil('messages published after the kill', () => pubs.every((p) => postKill(p).length >= 50), 20_000);
    // And commands keep being acked
    await waitUntil('commands acked after the kill', () => ackedNow() >= beforeKill + 60, 20_000);
    await Promise.all([...pubs.map((p) => p.stop()), ...workers.map((w) => w.stop())]);
    const missing = () => subs.flatMap((s) => pubs.flatMap((p) => postKill(p).filter((q) => !s.got.get(p.name)?.has(q)).map((q) => `${s.sock.name}<-${p.name}#${q}`)));
    await waitUntil('every post-kill message at every subscriber', () => missing().length === 0, 10_000).catch(() => assert.deepEqual(missing().slice(0, 20), [], 'messages lost on the survivor'));
    t.diagnostic(`${onVictim} clients moved in ${tBack - tKill} ms; ${pubs.reduce((n, p) => n + postKill(p).length, 0)} messages after the last resubscribe reached all ${SUBSCRIBERS} subscribers`);

    // And no acked command is lost: each in the store once under its acked id
    assert.deepEqual(workers.flatMap((w) => w.unexpected), [], 'only retryable refusals');
    assert.deepEqual(await assertAckedRecorded(pool, org, workers), []);
    // And a retry of an acked key, on the survivor, answers the original id
    const w0 = workers.find((w) => w.acked.size > 0)!;
    const retry = new RoamingSocket('retry', urls, await issuer.token(org, w0.name));
    stops.push(() => retry.stop());
    await retry.connect(survivor);
    for (const [key, eventId] of [...w0.acked].filter((_, i, all) => i === 0 || i === all.length - 1)) {
      const seq = Number(key.split('-').pop());
      const a = await retry.request(`r-${key}`, { op: 'cmd', type: 'device.reboot', topic: 'devices/d1/commands', data: { reason: `n${seq}` }, key });
      assert.equal(a?.op, 'ok', JSON.stringify(a));
      assert.equal(a?.eventId, eventId, `${key} answered with its original id`);
      assert.equal(a?.duplicate, true);
    }
    retry.stop();
    t.diagnostic(`${ackedNow()} commands acked (${ackedNow() - beforeKill} after the kill), ${workers.reduce((n, w) => n + w.retries, 0)} retries, ${workers.reduce((n, w) => n + w.duplicates, 0)} acks lost and recovered by key; ${Date.now() - t0} ms in all`);
  });
});
