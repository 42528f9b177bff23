/**
 * HTTP publish bench: autocannon against `POST /v1/publish` with a bearer token while one
 * WebSocket subscriber on the same topic counts deliveries. Reports requests/s, latency p50/p99,
 * non-2xx, and deliveries counted against 2xx answers (they should match: a 200 means the
 * message was handed to NATS).
 *
 *   node --import tsx loadtest/http.ts [--duration 10] [--connections 50] [--pipelining 1] [--size 128]
 */
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import autocannon from 'autocannon';
import { createBenchIssuer } from './lib/tokens.ts';
import { startTarget, BENCH_ORG, type Target } from './lib/targets.ts';
import { connectClient, newTally, makePayload } from './lib/clients.ts';
import { cpuMicros } from './lib/proc.ts';
import { si, fixed } from './lib/stats.ts';
import { Progress, printTable } from './lib/report.ts';

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: process.env.BENCH_DURATION ?? '10' },
    connections: { type: 'string', default: '50' },
    pipelining: { type: 'string', default: '1' },
    size: { type: 'string', default: '128' },
  },
});
const DURATION = Number(args.duration);
const CONNS = Number(args.connections);
const PIPE = Number(args.pipelining);
const SIZE = Number(args.size);

const progress = new Progress();

async function main(): Promise<void> {
  const issuer = await createBenchIssuer();
  let t: Target | undefined;
  try {
    progress.start('starting hub');
    t = await startTarget('hub', issuer);
    const tally = newTally();
    const sub = await connectClient({ proto: t.proto, baseUrl: t.wsUrl, token: await issuer.token(BENCH_ORG, 'http-sub'), topic: t.topic, tally });
    const token = await issuer.token(BENCH_ORG, 'http-pub');
    const url = `${t.httpUrl}/v1/publish`;
    // The payload's timestamp is fixed (one body for all requests); it is not used for latency here.
    const body = JSON.stringify({ topic: t.topic, data: makePayload(SIZE, 'http') });
    const probe = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body });
    if (probe.status !== 200) throw new Error(`probe POST ${url}: HTTP ${probe.status} ${await probe.text()}`);
    await sleep(200);
    tally.delivered = 0;
    progress.start(`autocannon ${DURATION}s c=${CONNS} p=${PIPE}`, () => ({ delivered: tally.delivered }));
    const cpu0 = cpuMicros(t.pid);
    const r = await autocannon({
      url,
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body,
      connections: CONNS,
      pipelining: PIPE,
      duration: DURATION,
    });
    const cpu1 = cpuMicros(t.pid);
    const ok = r['2xx'];
    // Deliveries may trail the last answers a little.
    for (let i = 0; i < 50 && tally.delivered < ok; i++) await sleep(100);
    progress.stop();
    process.stdout.write(`\nHTTP publish: POST /v1/publish, ${SIZE} B string data, ${CONNS} connections, pipelining ${PIPE}, ${DURATION} s; one WebSocket subscriber\n\n`);
    printTable(
      ['requests/s', 'p50 ms', 'p99 ms', '2xx', 'non-2xx', 'errors', 'timeouts', 'deliveries', 'hub CPU µs/request'],
      [[si(r.requests.average), fixed(r.latency.p50), fixed(r.latency.p99), ok, r.non2xx, r.errors, r.timeouts, tally.delivered, fixed((cpu1 - cpu0) / Math.max(1, ok), 1)]],
    );
    // autocannon stops with up to connections×pipelining requests in flight: the hub may publish
    // those, but their answers are not counted.
    const extra = tally.delivered - ok;
    if (extra < 0 || extra > CONNS * PIPE) {
      process.stdout.write(`\nMISMATCH: ${tally.delivered} deliveries vs ${ok} 2xx answers (in flight at stop: at most ${CONNS * PIPE})\n`);
    } else {
      process.stdout.write(`\ndeliveries match 2xx answers (+${extra} requests in flight when autocannon stopped; at most ${CONNS * PIPE})\n`);
    }
    if (tally.dropped) process.stdout.write(`\nthe subscriber was disconnected by the hub\n`);
    await sub.close();
  } finally {
    progress.stop();
    await t?.stop();
    issuer.dispose();
  }
}

await main();
