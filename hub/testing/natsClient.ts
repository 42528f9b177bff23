import { spawn, type ChildProcess } from 'node:child_process';
import { connect as netConnect } from 'node:net';
import { connect, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { freePort } from './hubProcess.ts';

export const NATS_URL = process.env.NATS_URL || 'nats://127.0.0.1:4222';
const NATS_SERVER_BIN = process.env.NATS_SERVER_BIN || '/usr/sbin/nats-server';

/** A plain NATS client on the shared test server (or `servers`), as a backend service would use it. */
export function connectNats(servers: string = NATS_URL): Promise<NatsConnection> {
  return connect({ servers: servers.split(',').map((s) => s.trim()) });
}

/** Every message seen on one subject (wildcards allowed), with a waiter for a count. */
export interface Collector {
  readonly msgs: Msg[];
  /** Resolves once at least `n` messages arrived; rejects after `timeoutMs`. */
  waitCount(n: number, timeoutMs?: number): Promise<Msg[]>;
  stop(): void;
}

/** Subscribes and flushes, so that the server knows the subscription before the call resolves. */
export async function collect(nc: NatsConnection, subject: string): Promise<Collector> {
  const msgs: Msg[] = [];
  let wake: (() => void) | undefined;
  const sub: Subscription = nc.subscribe(subject, {
    callback: (err, m) => {
      if (err) return;
      msgs.push(m);
      wake?.();
    },
  });
  await nc.flush();
  return {
    msgs,
    async waitCount(n, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (msgs.length < n) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`timed out: ${msgs.length}/${n} messages on ${subject}`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Math.min(left, 50));
          wake = () => (clearTimeout(t), resolve());
        });
        wake = undefined;
      }
      return msgs;
    },
    stop: () => sub.unsubscribe(),
  };
}

/** A private nats-server on loopback that a test may kill and restart on the same port. */
export interface NatsServer {
  port: number;
  url: string;
  /** Starts (or restarts) the server and waits until it accepts TCP connections. */
  start(): Promise<void>;
  /** Kills the server (SIGKILL: an outage, not a graceful shutdown) and waits for the exit. */
  kill(): Promise<void>;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ host: '127.0.0.1', port });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

/** Spawns `nats-server -a 127.0.0.1 -p <free port> [...extraArgs]`; call `start()` before use. */
export async function natsServer(port?: number, extraArgs: string[] = []): Promise<NatsServer> {
  const p = port ?? (await freePort());
  let child: ChildProcess | undefined;
  const server: NatsServer = {
    port: p,
    url: `nats://127.0.0.1:${p}`,
    async start() {
      if (child && child.exitCode === null && child.signalCode === null) return;
      const c = spawn(NATS_SERVER_BIN, ['-a', '127.0.0.1', '-p', String(p), ...extraArgs], { stdio: 'ignore' });
      child = c;
      const deadline = Date.now() + 5000;
      while (Date.now() < deadline) {
        if (c.exitCode !== null) throw new Error(`nats-server exited with ${c.exitCode} (port ${p} busy?)`);
        if (await canConnect(p)) return;
        await new Promise((r) => setTimeout(r, 50));
      }
      c.kill('SIGKILL');
      throw new Error(`nats-server did not listen on ${p} within 5 s`);
    },
    async kill() {
      const c = child;
      if (!c || c.exitCode !== null || c.signalCode !== null) return;
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGKILL');
      await exited;
    },
  };
  return server;
}
