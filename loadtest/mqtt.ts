/**
 * MQTT bench: the hub's bridge beside Mosquitto (127.0.0.1:1883) in the same run, same generator.
 *
 * - fan-out: S subscribers on one topic (QoS 0), one publisher sending M messages of SIZE bytes as
 *   fast as its socket drains;
 * - ingest: N publishers sending M messages in total to their own topics, one subscriber on `+`.
 *
 * Clients are raw TCP sockets speaking MQTT 3.1.1 through mqtt-packet (CONNECT, SUBSCRIBE, PUBLISH);
 * subscribers count bytes after SUBACK (every delivery has the same size), so the generator stays
 * far cheaper than the servers. Server CPU comes from /proc/<pid>/stat (the hub process; Mosquitto's
 * pid is the one listening on 1883). Bounded: every phase has a deadline.
 *
 *   node --import tsx loadtest/mqtt.ts [--subscribers 300] [--messages 5000] [--publishers 50]
 *     [--ingest 200000] [--runs 3] [--size 128] [--target both|hub|mosquitto] [--limits on|off|both]
 * `--limits both` runs two hubs, limits on and off, and alternates between them in every run.
 */
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import mqttPacket from 'mqtt-packet';
import { createBenchIssuer } from './lib/tokens.ts';
import { startHub, type HubServer } from './lib/servers.ts';
import { cpuMicros, freePort } from './lib/proc.ts';
import { printTable } from './lib/report.ts';
import { median, si, fixed } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: {
    subscribers: { type: 'string', default: '300' },
    messages: { type: 'string', default: '5000' },
    publishers: { type: 'string', default: '50' },
    ingest: { type: 'string', default: '200000' },
    runs: { type: 'string', default: '3' },
    size: { type: 'string', default: '128' },
    target: { type: 'string', default: 'both' },
    limits: { type: 'string', default: 'on' },
  },
});
const S = Number(args.subscribers);
const M = Number(args.messages);
const P = Number(args.publishers);
const IN = Number(args.ingest);
const RUNS = Number(args.runs);
const SIZE = Number(args.size);

interface Target {
  name: string;
  port: number;
  pid: number;
  password: string;
}

const gen = (p: mqttPacket.Packet) => mqttPacket.generate(p, { protocolVersion: 4 });

/** Opens a raw MQTT 3.1.1 connection; resolves after CONNACK (and SUBACK when `filter` is given). */
function open(t: Target, id: string, filter?: string): Promise<{ socket: net.Socket; bytes: () => number }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(t.port, '127.0.0.1');
    socket.setNoDelay(true);
    let phase = 0; // 0: wait CONNACK, 1: wait SUBACK, 2: counting
    let pre = Buffer.alloc(0);
    let counted = 0;
    const timer = setTimeout(() => reject(new Error(`${t.name}: ${id} not ready in 20 s`)), 20_000);
    socket.on('error', reject);
    socket.on('data', (d: Buffer) => {
      if (phase === 2) {
        counted += d.length;
        return;
      }
      pre = Buffer.concat([pre, d]);
      // CONNACK is 4 bytes, SUBACK 5 (one filter); anything after them is already counted.
      const need = phase === 0 ? 4 : 5;
      if (pre.length < need) return;
      const rest = pre.subarray(need);
      if (phase === 0) {
        if (pre[0] !== 0x20 || pre[3] !== 0) return reject(new Error(`${t.name}: CONNACK refused (${pre[3]})`));
        if (!filter) {
          phase = 2;
          clearTimeout(timer);
          return resolve({ socket, bytes: () => counted });
        }
        phase = 1;
        pre = Buffer.from(rest);
        socket.write(gen({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: filter, qos: 0 }] }));
        if (pre.length >= 5) socket.emit('data', Buffer.alloc(0));
        return;
      }
      if (pre[0] !== 0x90 || pre[4] > 2) return reject(new Error(`${t.name}: SUBACK refused`));
      phase = 2;
      counted += rest.length;
      clearTimeout(timer);
      resolve({ socket, bytes: () => counted });
    });
    socket.on('connect', () => socket.write(gen({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: id, clean: true, keepalive: 120, username: 'bench', password: Buffer.from(t.password) })));
  });
}

/** Writes `count` packets as fast as the socket drains, 256 packets per write. */
async function blast(socket: net.Socket, packet: Buffer, count: number): Promise<void> {
  const CHUNK = 256;
  const chunk = Buffer.concat(Array.from({ length: CHUNK }, () => packet));
  for (let sent = 0; sent < count; ) {
    const n = Math.min(CHUNK, count - sent);
    const ok = socket.write(n === CHUNK ? chunk : chunk.subarray(0, n * packet.length));
    sent += n;
    if (!ok) await new Promise((r) => socket.once('drain', r));
  }
}

/** Waits until `total()` reaches `want` or stops growing for 3 s; returns the time of the last growth. */
async function settle(total: () => number, want: number, deadlineMs = 60_000): Promise<number> {
  const start = performance.now();
  let last = total();
  let lastAt = performance.now();
  while (performance.now() - start < deadlineMs) {
    await new Promise((r) => setTimeout(r, 2));
    const now = total();
    if (now !== last) {
      last = now;
      lastAt = performance.now();
    }
    if (now >= want || performance.now() - lastAt > 3000) break;
  }
  return lastAt;
}

interface Row {
  target: string;
  scenario: string;
  delivered: number;
  expected: number;
  perSec: number;
  cpuUs: number;
}

async function fanout(t: Target, run: number): Promise<Row> {
  const topic = `bench/fan/${run}-${process.pid}`;
  const subs: { socket: net.Socket; bytes: () => number }[] = [];
  for (let i = 0; i < S; i += 50) {
    subs.push(...(await Promise.all(Array.from({ length: Math.min(50, S - i) }, (_, j) => open(t, `fs-${run}-${i + j}`, topic)))));
  }
  const pub = await open(t, `fp-${run}`);
  const packet = gen({ cmd: 'publish', topic, payload: Buffer.alloc(SIZE, 0x61), qos: 0, retain: false, dup: false });
  const want = S * M * packet.length;
  const total = () => subs.reduce((a, s) => a + s.bytes(), 0);
  await new Promise((r) => setTimeout(r, 300));
  const cpu0 = cpuMicros(t.pid);
  const t0 = performance.now();
  await blast(pub.socket, packet, M);
  const end = await settle(total, want);
  const cpu1 = cpuMicros(t.pid);
  const delivered = Math.floor(total() / packet.length);
  for (const s of [...subs, pub]) s.socket.destroy();
  return { target: t.name, scenario: `fan-out ${S} subs`, delivered, expected: S * M, perSec: delivered / ((end - t0) / 1000), cpuUs: (cpu1 - cpu0) / Math.max(1, delivered) };
}

async function ingest(t: Target, run: number): Promise<Row> {
  const base = `bench/in${run}x${process.pid}`;
  const sub = await open(t, `is-${run}`, `${base}/+`);
  const pubs = await Promise.all(Array.from({ length: P }, (_, i) => open(t, `ip-${run}-${i}`)));
  const per = Math.floor(IN / P);
  const packets = pubs.map((_, i) => gen({ cmd: 'publish', topic: `${base}/p${String(i).padStart(4, '0')}`, payload: Buffer.alloc(SIZE, 0x62), qos: 0, retain: false, dup: false }));
  const len = packets[0].length;
  await new Promise((r) => setTimeout(r, 300));
  const cpu0 = cpuMicros(t.pid);
  const t0 = performance.now();
  await Promise.all(pubs.map((p, i) => blast(p.socket, packets[i], per)));
  const end = await settle(sub.bytes, per * P * len);
  const cpu1 = cpuMicros(t.pid);
  const delivered = Math.floor(sub.bytes() / len);
  for (const s of [sub, ...pubs]) s.socket.destroy();
  return { target: t.name, scenario: `ingest ${P} pubs → 1 sub`, delivered, expected: per * P, perSec: delivered / ((end - t0) / 1000), cpuUs: (cpu1 - cpu0) / Math.max(1, delivered) };
}

function mosquittoPid(): number {
  const out = execFileSync('ss', ['-ltnpH', 'sport = :1883']).toString();
  const m = /mosquitto",pid=(\d+)/.exec(out);
  if (!m) throw new Error('no mosquitto listening on 127.0.0.1:1883');
  return Number(m[1]);
}

async function main(): Promise<void> {
  const targets: Target[] = [];
  const hubs: HubServer[] = [];
  const issuer = await createBenchIssuer();
  try {
    if (process.env.BENCH_HUB_MQTT_PORT) {
      // An already running hub (e.g. started with --cpu-prof): BENCH_HUB_MQTT_PORT, BENCH_HUB_PID, BENCH_HUB_TOKEN.
      targets.push({ name: 'orghub', port: Number(process.env.BENCH_HUB_MQTT_PORT), pid: Number(process.env.BENCH_HUB_PID), password: process.env.BENCH_HUB_TOKEN ?? '' });
    } else if (args.target !== 'mosquitto') {
      // `both` = on,off; a comma list (e.g. `off,on`) sets the order, to rule out an order bias.
      const modes = args.limits === 'both' ? ['on', 'off'] : (args.limits ?? 'on').split(',');
      for (const mode of modes) {
        const mqttPort = await freePort();
        const hub = await startHub(issuer.env, { ORGHUB_MQTT_PORT: String(mqttPort), ORGHUB_MQTT_RATE: '0', ORGHUB_LIMITS: mode });
        hubs.push(hub);
        targets.push({ name: modes.length > 1 ? `orghub limits ${mode}` : 'orghub', port: mqttPort, pid: hub.child.pid, password: await issuer.token('bench', 'bench') });
      }
    }
    if (args.target !== 'hub') targets.push({ name: 'mosquitto', port: 1883, pid: mosquittoPid(), password: 'unused' });
    const rows: Row[] = [];
    for (let run = 0; run < RUNS; run++) {
      for (const t of targets) {
        rows.push(await fanout(t, run));
        process.stderr.write(`run ${run} ${t.name} fan-out done\n`);
        rows.push(await ingest(t, run));
        process.stderr.write(`run ${run} ${t.name} ingest done\n`);
      }
    }
    const out: (string | number)[][] = [];
    for (const scenario of [...new Set(rows.map((r) => r.scenario))]) {
      const med: Record<string, number> = {};
      for (const t of targets) {
        const rs = rows.filter((r) => r.scenario === scenario && r.target === t.name);
        med[t.name] = median(rs.map((r) => r.perSec));
        out.push([
          scenario,
          t.name,
          rs.map((r) => si(r.perSec)).join(' / '),
          rs.map((r) => fixed(r.cpuUs, 2)).join(' / '),
          rs.map((r) => `${r.delivered}/${r.expected}`).join(' / '),
        ]);
      }
      const on = med['orghub limits on'];
      const off = med['orghub limits off'];
      if (on && off) out.push([scenario, 'ratio limits on / off (median)', fixed(on / off, 2), '', '']);
      if (med.orghub && med.mosquitto) out.push([scenario, 'ratio orghub / mosquitto (median)', fixed(med.orghub / med.mosquitto, 2), '', '']);
    }
    process.stdout.write(`\nMQTT bench: ${SIZE}-byte QoS 0 payloads, ${RUNS} runs; fan-out ${S} subscribers × ${M} messages; ingest ${P} publishers, ${IN} messages\n\n`);
    printTable(['scenario', 'server', 'deliveries/s (per run)', 'server CPU µs/delivery', 'delivered/expected'], out);
  } finally {
    for (const hub of hubs) await hub.stop();
    issuer.dispose();
  }
}

await main();
