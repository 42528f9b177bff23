/**
 * Resume storm (issue 11): N clients each lose their connection, M messages are published meanwhile,
 * then all N reconnect at once with `sub` + `since` and recover the M missed messages. Reports
 * recoveries/s (N / wall time until the last client has all M) and per-client latency percentiles
 * (connect start → the M-th recovered message).
 *
 * The peer in the same run: N concurrent ioredis clients reading the same M entries straight from
 * the same Redis stream (XRANGE), i.e. the storage floor without WebSocket, auth, framing or
 * ordering. Usage: npm run bench:resume -- [--clients 1000] [--missed 100]
 * The hub runs with its own nats-server (loadtest/lib/servers.ts); `BENCH_HUB_NODE_ARGS="--cpu-prof
 * --cpu-prof-dir=/tmp/prof"` profiles it.
 */
import { Redis } from 'ioredis';
import WebSocket from 'ws';
import { createBenchIssuer } from './lib/tokens.ts';
import { startHub } from './lib/servers.ts';
import { BENCH_ORG } from './lib/targets.ts';
import { percentiles } from './lib/stats.ts';
import { cpuMicros, selfCpuMicros } from './lib/proc.ts';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const N = arg('clients', 1000);
const M = arg('missed', 100);
const PREFIX = `orghub:bench-history:${Date.now()}:`;

type Frame = Record<string, any>;

/** Opens a JSON WebSocket, sends `sub` (with `since` when given) and resolves when `want` messages arrived. */
function resume(url: string, token: string, topic: string, since: { offset: number; epoch: string } | undefined, want: number): Promise<{ ms: number; ok: Frame; offsets: number[] }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, ['orghub.v1.json'], { headers: { authorization: `Bearer ${token}` }, perMessageDeflate: false });
    const offsets: number[] = [];
    let ok: Frame | undefined;
    const timer = setTimeout(() => (ws.terminate(), reject(new Error(`timeout: ok=${JSON.stringify(ok)} got ${offsets.length}`))), 120_000);
    ws.on('open', () => ws.send(JSON.stringify(since ? { op: 'sub', id: 1, topic, since } : { op: 'sub', id: 1, topic })));
    ws.on('message', (d: Buffer) => {
      const v = JSON.parse(d.toString());
      for (const f of Array.isArray(v) ? v : [v]) {
        if (f.op === 'ok' || f.op === 'err') ok = f;
        if (f.op === 'msg') offsets.push(f.offset);
      }
      if (ok && (ok.op === 'err' || offsets.length >= want)) {
        clearTimeout(timer);
        const ms = performance.now() - t0;
        ws.close();
        resolve({ ms, ok, offsets });
      }
    });
    ws.on('error', (e) => (clearTimeout(timer), reject(e)));
  });
}

async function main() {
  const issuer = await createBenchIssuer();
  const hub = await startHub(issuer.env, { ORGHUB_EVENT_STORE: 'none', ORGHUB_PRESENCE: 'off', ORGHUB_HISTORY_NAMESPACES: `chat=${Math.max(1000, M * 2)}:600`, ORGHUB_HISTORY_PREFIX: PREFIX, ORGHUB_LOG_LEVEL: 'error' });
  const org = BENCH_ORG;
  const topic = 'chat/storm';
  const token = await issuer.token(org, 'reader');
  try {
    // The starting point, then M messages published while every client is away
    const start = await resume(hub.wsUrl, token, topic, undefined, 0);
    const since = { offset: start.ok.offset as number, epoch: start.ok.epoch as string };
    const pub = await new Promise<WebSocket>((res) => {
      const w = new WebSocket(hub.wsUrl, ['orghub.v1.json'], { headers: { authorization: `Bearer ${token}` } });
      w.on('open', () => res(w));
    });
    await new Promise<void>((res) => {
      let acked = 0;
      pub.on('message', () => ++acked === M && res());
      for (let i = 0; i < M; i++) pub.send(JSON.stringify({ op: 'pub', id: i + 1, topic, data: { i, pad: 'x'.repeat(100) } }));
    });
    pub.close();

    const pub0 = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
    // orghub: N concurrent resumes
    // One identity per client: the standard tier caps connections per user (hub/limits)
    const tokens = await issuer.tokens(org, N, 'reader-');
    const hubCpu0 = cpuMicros(hub.child.pid);
    const redisPid = Number(/process_id:(\d+)/.exec(await pub0.info('server'))?.[1]);
    const redisCpu0 = redisPid ? cpuMicros(redisPid) : NaN;
    const self0 = process.cpuUsage();
    const t0 = performance.now();
    const results = await Promise.all(tokens.map((tk) => resume(hub.wsUrl, tk, topic, since, M)));
    const wall = performance.now() - t0;
    const hubCpuMs = (cpuMicros(hub.child.pid) - hubCpu0) / 1000;
    const redisCpuMs = redisPid ? (cpuMicros(redisPid) - redisCpu0) / 1000 : NaN;
    const selfMs = selfCpuMicros(self0) / 1000;
    const bad = results.filter((r) => r.ok.recovered !== true || r.offsets.length !== M || r.offsets.some((o, i) => o !== since.offset + 1 + i));
    const [p50, p99] = percentiles(results.map((r) => r.ms), [50, 99]);

    // Peer: N concurrent XRANGE reads of the same M entries, straight from Redis
    const key = `${PREFIX}s:${org}:${topic}`;
    const peers = Array.from({ length: Math.min(N, 200) }, () => new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'));
    await Promise.all(peers.map((r) => r.ping()));
    const p0 = performance.now();
    const peerMs = await Promise.all(
      Array.from({ length: N }, async (_, i) => {
        const t = performance.now();
        const rows = await peers[i % peers.length].xrange(key, `(${since.offset}-0`, '+', 'COUNT', M);
        if (rows.length !== M) throw new Error(`peer read ${rows.length}`);
        return performance.now() - t;
      }),
    );
    const peerWall = performance.now() - p0;
    const [q50, q99] = percentiles(peerMs, [50, 99]);
    await Promise.all(peers.map((r) => r.quit()));

    console.log(`resume storm: ${N} clients x ${M} missed messages (1 hub node, JSON subprotocol)`);
    console.log(`  orghub       ${(N / (wall / 1000)).toFixed(0)} recoveries/s   p50 ${p50.toFixed(1)} ms   p99 ${p99.toFixed(1)} ms   wall ${(wall / 1000).toFixed(2)} s   incomplete or out of order: ${bad.length}`);
    console.log(`               CPU during the storm: hub ${hubCpuMs.toFixed(0)} ms (${((hubCpuMs * 1000) / N).toFixed(0)} µs per recovery), Redis ${redisCpuMs.toFixed(0)} ms, generator ${selfMs.toFixed(0)} ms`);
    await pub0.quit();
    console.log(`  Redis XRANGE ${(N / (peerWall / 1000)).toFixed(0)} reads/s        p50 ${q50.toFixed(1)} ms   p99 ${q99.toFixed(1)} ms   wall ${(peerWall / 1000).toFixed(2)} s   (${peers.length} connections)`);
    const cleanup = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
    await cleanup.del(key, `${PREFIX}m:${org}:${topic}`);
    await cleanup.quit();
  } finally {
    await hub.stop();
    issuer.dispose();
  }
}

await main();
