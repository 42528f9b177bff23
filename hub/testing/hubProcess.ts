import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';

const MAIN = fileURLToPath(new URL('../main.ts', import.meta.url));

/** Binds `port` on loopback (0: any) and releases it; the port, or undefined when it is taken. */
function probe(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(undefined));
    s.listen(port, '127.0.0.1', () => {
      const bound = (s.address() as { port: number }).port;
      s.close(() => resolve(bound));
    });
  });
}

/** The lowest port the kernel hands out to outgoing connections (Linux), else 32768. */
function ephemeralLow(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32768;
  } catch {
    return 32768;
  }
}

/**
 * A free TCP port on loopback for a server a test starts (bound then released). Picked at random
 * below the kernel's ephemeral range: a port from that range (what `listen(0)` gives) can be taken
 * before the server binds it by the local end of any outgoing connection (the suite opens hundreds,
 * to Postgres, Redis and NATS), which made hubs fail with EADDRINUSE now and then. Other tests
 * picking at random from the same ~12,000 ports rarely pick the same one in the same instant.
 */
export async function freePort(): Promise<number> {
  const high = ephemeralLow() - 1;
  const low = Math.max(1024, high - 12_000);
  if (high - low >= 1000) {
    for (let i = 0; i < 50; i++) {
      const got = await probe(low + Math.floor(Math.random() * (high - low + 1)));
      if (got) return got;
    }
  }
  const any = await probe(0);
  if (!any) throw new Error('no free loopback port');
  return any;
}

/** A fresh org id per test, so suites can run in parallel against shared services. */
export function testOrg(prefix = 'org'): string {
  return `${prefix}-${randomBytes(5).toString('hex')}`;
}

export interface HubProcess {
  port: number;
  url: string;
  /** Where `/ready` and `/metrics` answer: the ops port's URL when ORGHUB_OPS_PORT is set, else `url`. */
  opsUrl: string;
  wsUrl: string;
  child: ChildProcess;
  /** Everything the process wrote to stdout/stderr so far. */
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts `hub/main.ts` as a real child process and waits until `/ready` answers 200 (on
 * ORGHUB_OPS_PORT when set). A port this function picked (no ORGHUB_PORT in `env`) may be taken
 * between `freePort` and the hub's listen, by another test's hub or by any outgoing connection's
 * local port: the hub then exits with "cannot listen on ... (ORGHUB_PORT)", and it is started again
 * on another port (3 tries).
 */
export async function startHubProcess(env: Record<string, string>, opts: { waitReady?: boolean; timeoutMs?: number } = {}): Promise<HubProcess> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(env, opts);
    } catch (err) {
      if (env.ORGHUB_PORT || attempt >= 3 || !(err instanceof PortTaken)) throw err;
    }
  }
}

class PortTaken extends Error {}

async function startOnce(env: Record<string, string>, opts: { waitReady?: boolean; timeoutMs?: number }): Promise<HubProcess> {
  const port = env.ORGHUB_PORT ? Number(env.ORGHUB_PORT) : await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN], {
    env: { ...process.env, ORGHUB_MQTT_PORT: '0', ORGHUB_LOG_LEVEL: 'warn', ...env, ORGHUB_PORT: String(port), ORGHUB_HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const hub: HubProcess = {
    port,
    url: `http://127.0.0.1:${port}`,
    opsUrl: env.ORGHUB_OPS_PORT ? `http://127.0.0.1:${env.ORGHUB_OPS_PORT}` : `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}/v1/ws`,
    child,
    output: () => out,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
  if (opts.waitReady === false) return hub;
  const deadline = Date.now() + (opts.timeoutMs ?? 60000);
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      const Err = out.includes(`cannot listen on 127.0.0.1:${port} (ORGHUB_PORT)`) ? PortTaken : Error;
      throw new Err(`hub exited with ${child.exitCode}:\n${out}`);
    }
    try {
      const r = await fetch(`${hub.opsUrl}/ready`);
      if (r.status === 200) return hub;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await hub.stop('SIGKILL');
  throw new Error(`hub not ready in time:\n${out}`);
}
