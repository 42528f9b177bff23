/**
 * MQTT persistent-session bench: the hub's bridge beside Mosquitto (127.0.0.1:1883) in the same run,
 * with the same raw mqtt-packet clients.
 *
 * N clients connect with clean session 0, subscribe one topic at QoS 1 and disconnect. A publisher
 * then sends Q QoS 1 messages (each acknowledged), which every server queues for all N offline
 * sessions. Then all N reconnect (clean session 0, in batches of 100) and acknowledge what they get.
 * Reported: messages/s delivered from the queues (first reconnect to last delivery), server CPU per
 * delivery (for orghub, the hub process plus its dedicated Redis, also shown apart), this
 * generator's CPU per delivery (it shares the machine's cores with the server) and its system time, the
 * server's sleeps per delivery (voluntary context switches: on loopback, the write that wakes a
 * sleeping server pays for the wake-up), every other process's CPU
 * per delivery and the cores the whole machine kept busy (/proc/stat: Postgres, NATS and whatever else
 * runs take the same cores), and for orghub the Redis memory
 * per queued message (a dedicated redis-server, so nothing else is counted), and the latency of each
 * reconnect (CONNECT written to CONNACK read; in batches of 100, so it includes the wait behind the
 * batch before's deliveries).
 *
 * Before the measured runs, each server (and this generator) gets `--warmup` untimed rounds of a
 * fifth of the sessions, so that no run pays for the JIT warm-up of the hub or of the generator
 * (the first target measured used to pay for both); `--warmup 0` measures cold.
 *
 * `BENCH_HUB_ENV='{"ORGHUB_PRESENCE":"off"}'` passes settings to the hub (to see what a feature costs).
 *
 * `--floor` adds two more servers to every run, between the hub and Mosquitto: the floor peer
 * (loadtest/peers/mqttSessionFloor.ts), a minimal Node.js MQTT server that does only what a
 * persistent session in Redis must (one claim script per reconnect, the queue in a Redis list), with
 * its sessions in the bench's Redis and then in its own memory. `--floor-window N` sends at most N
 * unacknowledged messages per connection (0: the whole queue at once, as the hub does here), and
 * `--floor-writes each` writes every packet on its own (Mosquitto's pattern) instead of one write
 * per turn, and `--floor-spin-us N` keeps the floor's event loop polling for N µs after each read
 * instead of sleeping (fewer wake-ups for the generator to pay; more server CPU).
 *
 *   node --import tsx loadtest/mqttSessions.ts [--sessions 1000] [--queued 100] [--size 128] [--runs 1] [--warmup 1] [--floor [--floor-window 0] [--floor-writes turn|each] [--floor-spin-us 0]]
 */
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { Redis } from 'ioredis';
import { createBenchIssuer } from './lib/tokens.ts';
import { startHub, type HubServer } from './lib/servers.ts';
import { cpuMicros, freePort, machineCpuSeconds, voluntarySwitches, startChild, waitForPort, type Child } from './lib/proc.ts';
import { printTable } from './lib/report.ts';
import { fixed, median, percentiles, si } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: {
    sessions: { type: 'string', default: '1000' },
    queued: { type: 'string', default: '100' },
    size: { type: 'string', default: '128' },
    runs: { type: 'string', default: '1' },
    warmup: { type: 'string', default: '1' },
    floor: { type: 'boolean', default: false },
    'floor-window': { type: 'string', default: '0' },
    'floor-writes': { type: 'string', default: 'turn' },
    'floor-spin-us': { type: 'string', default: '0' },
  },
});
const SESSIONS = Number(args.sessions);
const QUEUED = Number(args.queued);
const SIZE = Number(args.size);
const RUNS = Number(args.runs);
const WARMUP = Number(args.warmup);
const FLOOR = args.floor;

interface Target {
  name: string;
  port: number;
  pids: number[];
  password: string;
  /** Resolves once the server has queued `n` more messages than at `mark()` (orghub: /metrics). */
  queuedSince?: () => Promise<(n: number) => Promise<void>>;
  /** Resolves once `n` sessions are parked (orghub: /metrics); Mosquitto parks synchronously. */
  parked?: (n: number) => Promise<void>;
  redis?: Redis;
}

const gen = (p: Packet) => mqttPacket.generate(p, { protocolVersion: 4 });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A raw 3.1.1 client that acks every QoS 1 PUBLISH and counts them. */
function client(t: Target, clientId: string, onPublish: () => void): Promise<{ socket: net.Socket; send(p: Packet): void; next(cmd: string): Promise<Packet>; connackMs: number }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(t.port, '127.0.0.1');
    socket.setNoDelay(true);
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    const waiters: { cmd: string; resolve: (p: Packet) => void }[] = [];
    parser.on('packet', (p: Packet) => {
      if (p.cmd === 'publish') {
        if (p.qos === 1) socket.write(gen({ cmd: 'puback', messageId: p.messageId }));
        return onPublish();
      }
      const i = waiters.findIndex((w) => w.cmd === p.cmd);
      if (i >= 0) waiters.splice(i, 1)[0].resolve(p);
    });
    const next = (cmd: string) => new Promise<Packet>((r) => waiters.push({ cmd, resolve: r }));
    const timer = setTimeout(() => reject(new Error(`${t.name}: ${clientId} got no CONNACK in 30 s`)), 30_000);
    socket.on('error', reject);
    socket.on('data', (d) => parser.parse(d));
    socket.on('connect', () => {
      const sent = performance.now();
      next('connack').then((p) => {
        clearTimeout(timer);
        if ((p as { returnCode?: number }).returnCode !== 0) return reject(new Error(`${t.name}: CONNACK ${(p as { returnCode?: number }).returnCode}`));
        resolve({ socket, send: (x) => socket.write(gen(x)), next, connackMs: performance.now() - sent });
      });
      socket.write(gen({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, clean: false, keepalive: 300, username: 'bench', password: Buffer.from(t.password) }));
    });
  });
}

async function inBatches<T>(n: number, f: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < n; i += 100) out.push(...(await Promise.all(Array.from({ length: Math.min(100, n - i) }, (_, j) => f(i + j)))));
  return out;
}

interface Row {
  target: string;
  delivered: number;
  perSec: number;
  cpuUs: number;
  /** Server CPU per delivery split by process (orghub: hub, then its Redis), µs. */
  cpuSplit: number[];
  /** This generator's CPU per delivery (the same clients for both servers), µs. */
  genUs: number;
  /** Of which in the kernel (system time: its socket reads and the PUBACK writes), µs. */
  genSysUs: number;
  /** The server's sleeps per delivery (voluntary context switches, all threads; the first pid): each is a wake-up that whoever writes to it pays. */
  sleeps: number;
  /** Cores the whole machine kept busy during the drain (/proc/stat). */
  busyCores: number;
  /** Every other process's CPU per delivery during the drain (the machine less server and generator: Postgres, NATS, ...), µs. */
  otherUs: number;
  bytesPerMsg?: number;
  /** CONNECT written → CONNACK read, per reconnect, ms: p50 and p99. */
  connack: number[];
}

async function run(t: Target, r: number | string, N: number, Q: number): Promise<Row> {
  const topic = `bench/ps/${r}-${process.pid}`;
  const id = (i: number) => `ps-${r}-${process.pid}-${i}`;
  // 1. N persistent sessions subscribe, then leave.
  await inBatches(N, async (i) => {
    const c = await client(t, id(i), () => {});
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 1 }] });
    await c.next('suback');
    c.send({ cmd: 'disconnect' });
    c.socket.end();
  });
  await (t.parked ? t.parked(N) : sleep(500));
  const mem0 = t.redis ? Number(/used_memory:(\d+)/.exec(await t.redis.info('memory'))?.[1]) : 0;
  const queued = t.queuedSince ? await t.queuedSince() : undefined;
  // 2. Q acknowledged QoS 1 messages, each queued for every session.
  const pub = await client(t, `ps-pub-${r}-${process.pid}`, () => {});
  const payload = Buffer.alloc(SIZE, 0x63);
  for (let m = 0; m < Q; m++) {
    pub.send({ cmd: 'publish', topic, payload, qos: 1, messageId: m + 1, retain: false, dup: false });
    await pub.next('puback');
  }
  pub.socket.destroy();
  if (queued) await queued(N * Q);
  const mem1 = t.redis ? Number(/used_memory:(\d+)/.exec(await t.redis.info('memory'))?.[1]) : 0;
  // 3. Everyone comes back and drains its queue.
  let delivered = 0;
  const cpu0 = t.pids.map(cpuMicros);
  const sleeps0 = voluntarySwitches(t.pids[0]);
  const gen0 = process.cpuUsage();
  const machine0 = machineCpuSeconds();
  const t0 = performance.now();
  let lastAt = t0;
  const back = await inBatches(N, (i) => client(t, id(i), () => ((delivered++), (lastAt = performance.now()))));
  const deadline = Date.now() + 120_000;
  while (delivered < N * Q && Date.now() < deadline && performance.now() - lastAt < 5000) await sleep(5);
  const cpu1 = t.pids.map(cpuMicros);
  const sleeps = voluntarySwitches(t.pids[0]) - sleeps0;
  const genCpu = process.cpuUsage(gen0);
  const machineUs = (machineCpuSeconds() - machine0) * 1e6;
  const wallUs = (performance.now() - t0) * 1000;
  const per = Math.max(1, delivered);
  const cpuSplit = cpu1.map((c, i) => (c - cpu0[i]) / per);
  const genUs = (genCpu.user + genCpu.system) / per;
  const serverUs = cpuSplit.reduce((a, b) => a + b, 0);
  for (const c of back) {
    c.send({ cmd: 'disconnect' });
    c.socket.destroy();
  }
  return { target: t.name, delivered, perSec: delivered / ((lastAt - t0) / 1000), cpuUs: serverUs, cpuSplit, genUs, genSysUs: genCpu.system / per, sleeps: sleeps / per, busyCores: machineUs / wallUs, otherUs: machineUs / per - serverUs - genUs, bytesPerMsg: t.redis ? (mem1 - mem0) / (N * Q) : undefined, connack: percentiles(back.map((c) => c.connackMs), [50, 99]) };
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\d+(?:\\.\\d+)?)`, 'm').exec(text)?.[1] ?? 0);
}

async function waitMetric(url: string, name: string, atLeast: number): Promise<void> {
  const deadline = Date.now() + 120_000;
  while ((await metric(url, name)) < atLeast) {
    if (Date.now() > deadline) throw new Error(`${name} never reached ${atLeast}`);
    await sleep(50);
  }
}

function mosquittoPid(): number {
  const out = execFileSync('ss', ['-ltnpH', 'sport = :1883']).toString();
  const m = /mosquitto",pid=(\d+)/.exec(out);
  if (!m) throw new Error('no mosquitto listening on 127.0.0.1:1883');
  return Number(m[1]);
}

async function main(): Promise<void> {
  const issuer = await createBenchIssuer();
  let hub: HubServer | undefined;
  let redisChild: Child | undefined;
  let redis: Redis | undefined;
  const floors: Child[] = [];
  try {
    const redisPort = await freePort();
    redisChild = startChild('redis-server', 'redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
    await waitForPort(redisPort, 10_000, redisChild);
    redis = new Redis(`redis://127.0.0.1:${redisPort}`);
    const mqttPort = await freePort();
    hub = await startHub(issuer.env, { ORGHUB_MQTT_PORT: String(mqttPort), ORGHUB_MQTT_RATE: '0', REDIS_URL: `redis://127.0.0.1:${redisPort}`, ORGHUB_MQTT_MAX_SESSIONS: String(SESSIONS * RUNS + Math.ceil(SESSIONS / 5) * WARMUP + 10), ...(JSON.parse(process.env.BENCH_HUB_ENV ?? '{}') as Record<string, string>) });
    const url = `http://127.0.0.1:${hub.port}`;
    const targets: Target[] = [
      {
        name: 'orghub',
        port: mqttPort,
        pids: [hub.child.pid, redisChild.pid],
        password: await issuer.token('bench', 'bench'),
        redis,
        parked: (n) => waitMetric(url, 'orghub_mqtt_offline_sessions', n),
        queuedSince: async () => {
          const base = await metric(url, 'orghub_mqtt_queued_total');
          return (n) => waitMetric(url, 'orghub_mqtt_queued_total', base + n);
        },
      },
      { name: 'mosquitto', port: 1883, pids: [mosquittoPid()], password: 'unused' },
    ];
    if (FLOOR) {
      for (const store of ['redis', 'memory'] as const) {
        const port = await freePort();
        const child = startChild(`floor-${store}`, process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./peers/mqttSessionFloor.ts', import.meta.url))], { env: { ...process.env, PORT: String(port), REDIS_URL: `redis://127.0.0.1:${redisPort}`, FLOOR_STORE: store, FLOOR_WINDOW: args['floor-window'], FLOOR_WRITES: args['floor-writes'], FLOOR_SPIN_US: args['floor-spin-us'] } });
        floors.push(child);
        await waitForPort(port, 20_000, child);
        targets.splice(targets.length - 1, 0, { name: `floor (${store})`, port, pids: store === 'redis' ? [child.pid, redisChild.pid] : [child.pid], password: 'unused', redis: store === 'redis' ? redis : undefined });
      }
    }
    for (let w = 0; w < WARMUP; w++) {
      for (const t of targets) {
        await run(t, `w${w}`, Math.ceil(SESSIONS / 5), QUEUED);
        process.stderr.write(`warm-up ${w} ${t.name} done\n`);
      }
    }
    const rows: Row[] = [];
    for (let r = 0; r < RUNS; r++) {
      for (const t of targets) {
        rows.push(await run(t, r, SESSIONS, QUEUED));
        process.stderr.write(`run ${r} ${t.name} done\n`);
      }
    }
    process.stdout.write(`\nMQTT persistent sessions: ${SESSIONS} offline sessions × ${QUEUED} queued QoS 1 messages of ${SIZE} bytes, then all reconnect (${RUNS} run(s), after ${WARMUP} untimed warm-up round(s) of ${Math.ceil(SESSIONS / 5)} sessions per server)\n\n`);
    printTable(
      ['server', 'delivered from queues', 'messages/s', 'server CPU µs/delivery', 'of which server process / Redis', 'generator CPU µs/delivery (of which system)', 'server sleeps/delivery', 'other processes µs/delivery', 'machine cores busy', 'Redis bytes/queued message', 'reconnect CONNACK p50 / p99 ms'],
      rows.map((x) => [x.target, `${x.delivered}/${SESSIONS * QUEUED}`, si(x.perSec), fixed(x.cpuUs, 2), x.cpuSplit.length > 1 ? x.cpuSplit.map((c) => fixed(c, 2)).join(' / ') : '', `${fixed(x.genUs, 2)} (${fixed(x.genSysUs, 2)})`, fixed(x.sleeps, 3), fixed(x.otherUs, 2), fixed(x.busyCores, 2), x.bytesPerMsg === undefined ? 'n/a (in process memory)' : fixed(x.bytesPerMsg, 0), `${fixed(x.connack[0], 1)} / ${fixed(x.connack[1], 1)}`]),
    );
    // Ratios of the medians of messages/s (the figure the docs record per invocation).
    const med = (name: string) => median(rows.filter((x) => x.target === name).map((x) => x.perSec));
    const ratio = (a: string, b: string) => `${a} / ${b} ${fixed(med(a) / med(b), 2)}×`;
    const pairs = [['orghub', 'mosquitto'], ...targets.filter((t) => t.name.startsWith('floor')).flatMap((t) => [[t.name, 'mosquitto'], ['orghub', t.name]])];
    process.stdout.write(`\nratios of medians: ${pairs.map(([a, b]) => ratio(a, b)).join(', ')}\n`);
  } finally {
    for (const f of floors) await f.stop();
    redis?.disconnect();
    await hub?.stop();
    await redisChild?.stop();
    issuer.dispose();
  }
}

await main();
