/**
 * Load generators for the tenant-safety tests and the fairness benchmark (issue 9), kept in one
 * place so tests and loadtest/ share them:
 *
 * - `startFlood` runs a flood in a child process (so its client CPU does not sit on the event loop
 *   that measures the victim's latency): `cmd` keeps `inflight` commands outstanding on each of
 *   `conns` WebSocket connections; `ready` keeps `conns` `/ready` requests outstanding (paced to
 *   `rate`/s when given), on keep-alive sockets with a lean client (below).
 * - `pacedCommands` sends `n` commands at `rate`/s on one connection and returns each ack's latency.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';

const SELF = fileURLToPath(import.meta.url);

export interface FloodOptions {
  mode: 'cmd' | 'ready';
  /** `ready` mode: the path to flood; default `/ready` (`/health` gives the pure HTTP cost as a peer). */
  path?: string;
  /** ws URL for `cmd`, http base URL for `ready`. */
  url: string;
  token?: string;
  conns: number;
  /** `cmd`: commands outstanding per connection. */
  inflight?: number;
  /** `cmd`: after a refusal carrying `retryAfterMs`, wait that long before the next send (a compliant client); default: send at once. */
  honourRetry?: boolean;
  /** `ready`: requests per second in all (0 = as fast as the connections go). */
  rate?: number;
  /**
   * `ready`: the HTTP client. `lean` (default) writes one prepared request per keep-alive socket
   * and frames the answer by its Content-Length, 60-72 µs of CPU per request in bench:fairness on
   * the 2-core machines; `fetch` (Node's, undici) costs 380-480 µs, so at 2000 requests/s it alone takes
   * most of a core from the server it floods (docs/benchmarks.md "Tenant fairness").
   */
  client?: 'lean' | 'fetch';
  /**
   * Runs the flood process at this nice value (via nice(1), so that every thread of it has it): at
   * 19 the generator stands for clients on other machines, taking only CPU the servers leave idle.
   * Default 0.
   */
  nice?: number;
}

export interface FloodResult {
  sent: number;
  ok: number;
  errors: Record<string, number>;
  seconds: number;
  /** `cmd`: ack latency percentiles of the flood's own commands, ms. */
  p50?: number;
  p99?: number;
  /** The flood process's own CPU (user + system) while it ran, µs: what the generator took from the machine. */
  cpuMicros: number;
}

export interface Flood {
  /** Resolves once every connection is open and sending. */
  started: Promise<void>;
  stop(): Promise<FloodResult>;
  child: ChildProcess;
}

export function startFlood(opts: FloodOptions): Flood {
  const argv = [process.execPath, '--import', 'tsx', SELF, JSON.stringify(opts)];
  if (opts.nice) argv.unshift('nice', '-n', String(opts.nice));
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  let onStarted: () => void;
  const started = new Promise<void>((r) => (onStarted = r));
  child.stdout!.on('data', (d) => {
    out += d;
    if (out.includes('started\n')) onStarted();
  });
  let exit = '';
  // 'close', not 'exit': the child's last stdout chunk (its result) may arrive after 'exit'.
  const exited = new Promise<void>((r) => child.once('close', (code, signal) => ((exit = `exit ${code ?? signal}`), r())));
  return {
    started,
    child,
    async stop() {
      child.kill('SIGTERM');
      await exited;
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (!line) throw new Error(`flood child gave no result (${exit}): ${out}`);
      return JSON.parse(line) as FloodResult;
    },
  };
}

/** Sends `n` commands at `rate`/s (open loop) and resolves with each ack's latency in ms. */
export async function pacedCommands(ws: WebSocket, n: number, rate: number, idBase: number, keyPrefix: string): Promise<{ latencies: number[]; errors: string[]; sentMs: number[] }> {
  const sentAt = new Map<number, number>();
  const latencies: number[] = [];
  /** For each latency, when its command was sent (ms since the first one). */
  const sentMs: number[] = [];
  const errors: string[] = [];
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  const onMessage = (data: Buffer) => {
    const now = performance.now();
    const v = JSON.parse(data.toString());
    for (const f of Array.isArray(v) ? v : [v]) {
      const t = sentAt.get(f.id);
      if (t === undefined) continue;
      sentAt.delete(f.id);
      if (f.op === 'ok') latencies.push(now - t), sentMs.push(t - t0);
      else errors.push(f.code);
      if (latencies.length + errors.length === n) done();
    }
  };
  ws.on('message', onMessage);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const id = idBase + i;
    sentAt.set(id, performance.now());
    ws.send(JSON.stringify({ op: 'cmd', id, type: 'device.reboot', topic: 'devices/d1/commands', data: { reason: 'paced' }, key: `${keyPrefix}-${i}` }));
  }
  await Promise.race([finished, new Promise((r) => setTimeout(r, 30_000))]);
  ws.off('message', onMessage);
  if (latencies.length + errors.length < n) throw new Error(`paced commands: ${n - latencies.length - errors.length} unanswered`);
  return { latencies, errors, sentMs };
}

export function openWs(url: string, token: string): Promise<WebSocket> {
  const ws = new WebSocket(url, ['orghub.v1.json'], { headers: { authorization: `Bearer ${token}` }, perMessageDeflate: false });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

// --- the child ---
async function child(opts: FloodOptions): Promise<void> {
  const result: FloodResult = { sent: 0, ok: 0, errors: {}, seconds: 0, cpuMicros: 0 };
  const cpu0 = process.cpuUsage();
  let running = true;
  const t0 = performance.now();
  const count = (code: string) => (result.errors[code] = (result.errors[code] ?? 0) + 1);
  const closers: Array<() => void> = [];
  if (opts.mode === 'cmd') {
    const inflight = opts.inflight ?? 32;
    let seq = 0;
    const sentAt = new Map<number, number>();
    const lat: number[] = [];
    closers.push(() => {
      const s = Float64Array.from(lat).sort();
      const at = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))];
      if (s.length) Object.assign(result, { p50: at(0.5), p99: at(0.99) });
    });
    for (let c = 0; c < opts.conns; c++) {
      const ws = await openWs(opts.url, opts.token!);
      const send = () => {
        if (!running) return;
        result.sent++;
        sentAt.set(++seq, performance.now());
        ws.send(JSON.stringify({ op: 'cmd', id: seq, type: 'device.reboot', topic: `devices/f${c}/commands`, data: { reason: 'flood' } }));
      };
      ws.on('message', (data: Buffer) => {
        const v = JSON.parse(data.toString());
        const now = performance.now();
        for (const f of Array.isArray(v) ? v : [v]) {
          const t = sentAt.get(f.id);
          if (t !== undefined && running) lat.push(now - t);
          sentAt.delete(f.id);
          if (f.op === 'ok') result.ok++;
          else if (f.op === 'err') count(f.code);
          if (opts.honourRetry && f.op === 'err' && typeof f.retryAfterMs === 'number') setTimeout(send, f.retryAfterMs);
          else send();
        }
      });
      // A connection the hub closes (e.g. 4003 for sustained rate-limit abuse) is counted, not reopened.
      ws.on('close', (code: number) => running && count(`close_${code}`));
      ws.on('error', (e) => count(`ws_error:${(e as NodeJS.ErrnoException).code ?? e.message}`));
      closers.push(() => ws.terminate());
      for (let i = 0; i < inflight; i++) send();
    }
  } else {
    const rate = opts.rate ?? 0;
    const gap = rate > 0 ? (opts.conns * 1000) / rate : 0;
    const path = opts.path ?? '/ready';
    const settled = (status: number | 'network') => {
      if (status === 200) result.ok++;
      else count(String(status));
    };
    if (opts.client === 'fetch') {
      for (let c = 0; c < opts.conns; c++) {
        void (async () => {
          while (running) {
            const t = performance.now();
            result.sent++;
            try {
              const r = await fetch(`${opts.url}${path}`);
              await r.arrayBuffer();
              settled(r.status);
            } catch {
              settled('network');
            }
            const wait = gap - (performance.now() - t);
            if (wait > 1) await new Promise((r) => setTimeout(r, wait));
          }
        })();
      }
    } else {
      const u = new URL(opts.url);
      for (let c = 0; c < opts.conns; c++) closers.push(leanHttpLoop(u, path, gap, () => running, () => result.sent++, settled));
    }
  }
  process.stdout.write('started\n');
  // Alive until told to stop, even when the hub closed every connection: the result is printed then.
  const alive = setInterval(() => {}, 1000);
  process.once('SIGTERM', () => {
    clearInterval(alive);
    running = false;
    result.seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    result.cpuMicros = cpu.user + cpu.system;
    for (const c of closers) c();
    process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
  });
}

/**
 * One keep-alive connection that sends `GET path` again once the answer is in and `gap` ms have
 * passed since the last send. The answer is framed by its status line and Content-Length (uWS
 * sends one on every `end()`), which is all a load generator needs; a connection that breaks is
 * counted as `network` and opened again. Returns its closer.
 */
function leanHttpLoop(u: URL, path: string, gap: number, running: () => boolean, sent: () => void, settled: (status: number | 'network') => void): () => void {
  const request = Buffer.from(`GET ${path} HTTP/1.1\r\nHost: ${u.host}\r\n\r\n`);
  let sock: net.Socket;
  let closed = false;
  let sentAt = 0;
  const send = () => {
    if (!running() || closed) return;
    sent();
    sentAt = performance.now();
    sock.write(request);
  };
  const open = () => {
    let buf: Buffer = Buffer.alloc(0);
    let waiting = false;
    sock = net.connect(Number(u.port), u.hostname, send);
    sock.setNoDelay(true);
    sock.on('data', (d: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.toString('latin1', 0, end);
        const len = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < end + 4 + len) return;
        buf = buf.subarray(end + 4 + len);
        settled(Number(head.slice(9, 12)));
        const wait = gap - (performance.now() - sentAt);
        if (wait > 1) setTimeout(send, wait);
        else send();
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      if (closed || !running() || waiting) return;
      waiting = true;
      settled('network');
      setTimeout(open, 10);
    });
  };
  open();
  return () => {
    closed = true;
    sock.destroy();
  };
}

if (process.argv[1] === SELF) void child(JSON.parse(process.argv[2]) as FloodOptions);
