import { mkdtempSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startChild, freePort, waitForPort, waitForHttp200, removeOnExit, type Child } from './proc.ts';

/** Repository root (loadtest/lib/../..). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const NATS_SERVER_BIN = process.env.NATS_SERVER_BIN ?? '/usr/sbin/nats-server';

export interface RunningServer {
  readonly name: string;
  readonly child: Child;
  /** ws://127.0.0.1:port/... for WebSocket clients. */
  readonly wsUrl: string;
  /** http://127.0.0.1:port for HTTP, when the server has it. */
  readonly httpUrl?: string;
  stop(): Promise<void>;
}

export interface NatsServer extends RunningServer {
  readonly clientPort: number;
  readonly natsUrl: string;
}

/**
 * A dedicated nats-server on a temporary config: a client port, and a WebSocket listener when
 * `websocket` is set. The machine's own NATS is never touched.
 */
export async function startNatsServer(opts: { websocket?: boolean; name?: string } = {}): Promise<NatsServer> {
  const clientPort = await freePort();
  const wsPort = opts.websocket ? await freePort() : 0;
  const dir = mkdtempSync(join(tmpdir(), 'orghub-bench-nats-'));
  removeOnExit(dir);
  const conf = join(dir, 'nats.conf');
  let text = `listen: "127.0.0.1:${clientPort}"\n`;
  if (opts.websocket) text += `websocket {\n  listen: "127.0.0.1:${wsPort}"\n  no_tls: true\n}\n`;
  writeFileSync(conf, text);
  const name = opts.name ?? (opts.websocket ? 'nats-server (ws)' : 'nats-server');
  const child = startChild(name, NATS_SERVER_BIN, ['-c', conf]);
  await waitForPort(clientPort, 10_000, child);
  if (wsPort) await waitForPort(wsPort, 10_000, child);
  return {
    name,
    child,
    clientPort,
    natsUrl: `nats://127.0.0.1:${clientPort}`,
    wsUrl: wsPort ? `ws://127.0.0.1:${wsPort}/` : '',
    async stop() {
      await child.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** True if hub/main.ts exists (the hub is being written alongside the benches). */
export function hubExists(): boolean {
  return existsSync(join(REPO_ROOT, 'hub', 'main.ts'));
}

/** The bench org's limits: the enterprise tier with rates and caps far above any bench's load. */
export const BENCH_LIMITS = {
  tier: 'enterprise',
  publish: { connection: 1e9, user: 1e9, org: 1e9 },
  commands: { connection: 1e9, user: 1e9, org: 1e9 },
  connections: { org: 1e9, user: 1e9 },
  maxMessageBytes: 16 * 1024 * 1024,
  inflightCommands: 1_000_000,
} as const;

export interface HubServer extends RunningServer {
  readonly port: number;
  /** Where `/ready` and `/metrics` answer: the ops port when ORGHUB_OPS_PORT is set, else httpUrl. */
  readonly opsUrl: string;
  readonly nats: NatsServer;
}

/**
 * Starts a dedicated plain nats-server and the hub as `node --import tsx hub/main.ts` on free
 * ports, loopback only, then waits for `/ready` (on ORGHUB_OPS_PORT when `extraEnv` sets it). `extraEnv` overrides anything (e.g. limits).
 * `BENCH_HUB_NODE_ARGS` adds Node options for the hub process only, e.g.
 * `BENCH_HUB_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof"` to profile the hub under a bench.
 */
export async function startHub(jwtEnv: Record<string, string>, extraEnv: Record<string, string> = {}): Promise<HubServer> {
  if (!hubExists()) throw new Error('hub/main.ts does not exist yet');
  const nats = await startNatsServer({ name: 'nats-server (hub)' });
  const port = await freePort();
  const env = {
    ...process.env,
    ORGHUB_PORT: String(port),
    ORGHUB_HOST: '127.0.0.1',
    NATS_URL: nats.natsUrl,
    ORGHUB_MQTT_PORT: '0',
    ORGHUB_LOG_LEVEL: 'warn',
    // Limits stay on (the default) but never bind for the bench org: benches measure throughput,
    // and bench:fanout/bench:mqtt --limits both measure what the checks cost. ORGHUB_LIMITS=off in
    // extraEnv turns them off.
    ORGHUB_LIMITS_ORGS: JSON.stringify({ bench: BENCH_LIMITS }),
    ...jwtEnv,
    ...extraEnv,
  };
  const nodeArgs = (process.env.BENCH_HUB_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
  const child = startChild('hub', process.execPath, [...nodeArgs, '--import', 'tsx', 'hub/main.ts'], { cwd: REPO_ROOT, env });
  const httpUrl = `http://127.0.0.1:${port}`;
  const opsPort = extraEnv.ORGHUB_OPS_PORT;
  const opsUrl = opsPort ? `http://127.0.0.1:${opsPort}` : httpUrl;
  try {
    await waitForHttp200(`${opsUrl}/ready`, 60_000, child);
  } catch (e) {
    await child.stop();
    await nats.stop();
    throw e;
  }
  return {
    name: 'hub',
    child,
    port,
    nats,
    httpUrl,
    opsUrl,
    wsUrl: `ws://127.0.0.1:${port}/v1/ws`,
    async stop() {
      await child.stop();
      await nats.stop();
    },
  };
}

/** The minimal raw uWebSockets.js pub/sub of BASELINES.md (loadtest/peers/uwsRaw.ts), no auth. */
export async function startUwsRaw(): Promise<RunningServer> {
  const port = await freePort();
  const child = startChild('uws-raw', process.execPath, ['--import', 'tsx', 'loadtest/peers/uwsRaw.ts'], {
    cwd: REPO_ROOT,
    env: { ...process.env, PORT: String(port) },
  });
  await waitForPort(port, 15_000, child);
  return {
    name: 'uws-raw',
    child,
    wsUrl: `ws://127.0.0.1:${port}/`,
    httpUrl: `http://127.0.0.1:${port}`,
    stop: () => child.stop(),
  };
}

/** The bench:http peer (loadtest/peers/uwsHttp.ts) with its own nats-server, like the hub has. */
export async function startUwsHttp(): Promise<RunningServer & { nats: NatsServer; httpUrl: string }> {
  const nats = await startNatsServer({ name: 'nats-server (uws-http)' });
  const port = await freePort();
  const child = startChild('uws-http', process.execPath, ['--import', 'tsx', 'loadtest/peers/uwsHttp.ts'], {
    cwd: REPO_ROOT,
    env: { ...process.env, PORT: String(port), NATS_URL: nats.natsUrl },
  });
  try {
    await waitForPort(port, 15_000, child);
  } catch (e) {
    await child.stop();
    await nats.stop();
    throw e;
  }
  return {
    name: 'uws-http',
    child,
    nats,
    wsUrl: '',
    httpUrl: `http://127.0.0.1:${port}`,
    async stop() {
      await child.stop();
      await nats.stop();
    },
  };
}
