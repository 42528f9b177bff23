/**
 * HTTP publish bench: autocannon against `POST /v1/publish` on the hub and, in the same run, on a
 * peer (loadtest/peers/uwsHttp.ts: uWebSockets.js that parses the same JSON and publishes to NATS,
 * without auth). Runs alternate hub, peer, hub, peer... so that both see the same machine. Each
 * has its own nats-server, where a NATS subscriber counts what was published (it should match the
 * 2xx answers: a 200 means the message was handed to NATS).
 *
 * Token modes: `one` sends one bearer token on every request (the hub's verified-token cache
 * answers all but the first); `distinct` cycles through --distinct pre-signed tokens, more than
 * the hub's cache holds (ORGHUB_JWT_CACHE_SIZE, default 10 000, oldest evicted first), so every
 * request pays a full ES256 verification.
 *
 *   node --import tsx loadtest/http.ts [--duration 8] [--connections 50] [--pipelining 1] [--size 128]
 *        [--tokens one|distinct|both] [--distinct 20000] [--rounds 2]
 */
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import autocannon from 'autocannon';
import { connect } from '@nats-io/transport-node';
import { createBenchIssuer } from './lib/tokens.ts';
import { BENCH_ORG } from './lib/targets.ts';
import { startHub, startUwsHttp } from './lib/servers.ts';
import { makePayload } from './lib/clients.ts';
import { cpuMicros } from './lib/proc.ts';
import { si, fixed } from './lib/stats.ts';
import { Progress, printTable } from './lib/report.ts';

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: process.env.BENCH_DURATION ?? '8' },
    connections: { type: 'string', default: '50' },
    pipelining: { type: 'string', default: '1' },
    size: { type: 'string', default: '128' },
    tokens: { type: 'string', default: 'both' },
    distinct: { type: 'string', default: '20000' },
    rounds: { type: 'string', default: '2' },
  },
});
const DURATION = Number(args.duration);
const CONNS = Number(args.connections);
const PIPE = Number(args.pipelining);
const SIZE = Number(args.size);
const ROUNDS = Number(args.rounds);
const DISTINCT = Number(args.distinct);
const MODES = args.tokens === 'both' ? (['one', 'distinct'] as const) : ([args.tokens] as ('one' | 'distinct')[]);
for (const m of MODES) if (m !== 'one' && m !== 'distinct') throw new Error(`--tokens one|distinct|both, not ${m}`);

const TOPIC = 'bench/http';
const progress = new Progress();

interface Server {
  label: string;
  url: string;
  natsUrl: string;
  pid: number;
  stop(): Promise<void>;
}

/** Counts messages on the server's own nats-server, under the bench org. */
async function natsTally(natsUrl: string) {
  const nc = await connect({ servers: natsUrl });
  const tally = { n: 0 };
  const sub = nc.subscribe(`hub.${BENCH_ORG}.>`);
  void (async () => {
    for await (const _ of sub) tally.n++;
  })();
  await nc.flush();
  return { tally, close: () => nc.drain() };
}

async function main(): Promise<void> {
  const issuer = await createBenchIssuer();
  const servers: Server[] = [];
  try {
    progress.start(`signing ${DISTINCT} distinct tokens`);
    const one = await issuer.token(BENCH_ORG, 'http-pub');
    const many = MODES.includes('distinct') ? await issuer.tokens(BENCH_ORG, DISTINCT, 'http-') : [];
    progress.start('starting hub and peer');
    const hub = await startHub(issuer.env);
    servers.push({ label: 'orghub', url: hub.httpUrl!, natsUrl: hub.nats.natsUrl, pid: hub.child.pid, stop: () => hub.stop() });
    const peer = await startUwsHttp();
    servers.push({ label: 'uWS.js + NATS peer', url: peer.httpUrl, natsUrl: peer.nats.natsUrl, pid: peer.child.pid, stop: () => peer.stop() });

    const body = JSON.stringify({ topic: TOPIC, data: makePayload(SIZE, 'http') });
    const rows: (string | number)[][] = [];
    const notes: string[] = [];
    for (const s of servers) {
      const probe = await fetch(`${s.url}/v1/publish`, { method: 'POST', headers: { authorization: `Bearer ${one}`, 'content-type': 'application/json' }, body });
      if (probe.status !== 200) throw new Error(`probe POST ${s.url}/v1/publish (${s.label}): HTTP ${probe.status} ${await probe.text()}`);
    }

    for (const mode of MODES) {
      for (let round = 1; round <= ROUNDS; round++) {
        for (const s of servers) {
          const counter = await natsTally(s.natsUrl);
          let next = 0;
          progress.start(`${mode} token(s), round ${round}/${ROUNDS}: ${s.label} ${DURATION}s c=${CONNS} p=${PIPE}`, () => ({ delivered: counter.tally.n }));
          const cpu0 = cpuMicros(s.pid);
          const r = await autocannon({
            url: `${s.url}/v1/publish`,
            connections: CONNS,
            pipelining: PIPE,
            duration: DURATION,
            requests: [
              {
                method: 'POST',
                body,
                headers: { authorization: `Bearer ${one}`, 'content-type': 'application/json' },
                setupRequest: (req) => {
                  if (mode === 'distinct') req.headers = { ...req.headers, authorization: `Bearer ${many[next++ % many.length]}` };
                  return req;
                },
              },
            ],
          });
          const cpu1 = cpuMicros(s.pid);
          const ok = r['2xx'];
          // What was published may trail the last answers a little.
          for (let i = 0; i < 50 && counter.tally.n < ok; i++) await sleep(100);
          const published = counter.tally.n;
          await counter.close();
          rows.push([mode, round, s.label, si(r.requests.average), fixed(r.latency.p50), fixed(r.latency.p99), ok, r.non2xx, r.errors + r.timeouts, published, fixed((cpu1 - cpu0) / Math.max(1, ok), 1)]);
          // autocannon stops with up to connections × pipelining requests in flight.
          const extra = published - ok;
          if (extra < 0 || extra > CONNS * PIPE) notes.push(`MISMATCH ${mode} round ${round} ${s.label}: ${published} published vs ${ok} 2xx`);
          if (mode === 'distinct' && s.label === 'orghub' && next < DISTINCT / 2) notes.push(`note: only ${next} distinct tokens used in this run (fewer than the cache holds)`);
        }
      }
    }
    progress.stop();
    process.stdout.write(
      `\nHTTP publish: POST /v1/publish, ${SIZE} B string data, ${CONNS} connections, pipelining ${PIPE}, ${DURATION} s per run, alternating hub and peer\n` +
        `token modes: one = the same token on every request; distinct = ${DISTINCT} pre-signed tokens in turn (the hub verifies each: its cache holds 10 000)\n\n`,
    );
    printTable(['tokens', 'round', 'server', 'requests/s', 'p50 ms', 'p99 ms', '2xx', 'non-2xx', 'errors', 'published', 'server CPU µs/request'], rows);
    process.stdout.write(`\n${notes.length ? notes.join('\n') : 'published messages match 2xx answers in every run'}\n`);
  } finally {
    progress.stop();
    for (const s of servers) await s.stop();
    issuer.dispose();
  }
}

await main();
