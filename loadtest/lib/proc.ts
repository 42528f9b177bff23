import { spawn, execFileSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Child processes and /proc readings for the benches. Every child started here is registered and
 * killed when the bench exits, whether normally, on SIGINT/SIGTERM or on an uncaught error.
 */

const children = new Set<ChildProcess>();
const tempDirs = new Set<string>();
let hooksInstalled = false;

/** Removes `dir` when the bench exits, also on SIGINT and errors. */
export function removeOnExit(dir: string): void {
  installExitHooks();
  tempDirs.add(dir);
}

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  const killAll = (): void => {
    for (const c of children) {
      if (c.exitCode === null && c.signalCode === null) {
        try { c.kill('SIGKILL'); } catch { /* already gone */ }
      }
    }
    for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
  };
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      process.stderr.write(`\n${sig}: stopping children\n`);
      killAll();
      process.exit(130);
    });
  }
  process.on('uncaughtException', (err) => {
    process.stderr.write(`\nuncaught: ${err?.stack ?? err}\n`);
    killAll();
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    process.stderr.write(`\nunhandled rejection: ${(err as Error)?.stack ?? err}\n`);
    killAll();
    process.exit(1);
  });
}

/** A started child with the tail of its output kept for error messages. */
export interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly pid: number;
  /** Last ~8 KiB of stdout+stderr. */
  tail(): string;
  /** SIGTERM, then SIGKILL after `graceMs`. Resolves once the process has exited. */
  stop(graceMs?: number): Promise<void>;
  /** True while the process runs. */
  alive(): boolean;
}

export function startChild(name: string, cmd: string, args: string[], opts: SpawnOptions = {}): Child {
  installExitHooks();
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  if (proc.pid === undefined) throw new Error(`${name}: spawn ${cmd} failed`);
  children.add(proc);
  let out = '';
  const keep = (b: Buffer): void => {
    out += b.toString();
    if (out.length > 8192) out = out.slice(-8192);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  const exited = new Promise<void>((resolve) => proc.once('exit', () => { children.delete(proc); resolve(); }));
  const alive = (): boolean => proc.exitCode === null && proc.signalCode === null;
  return {
    name,
    proc,
    pid: proc.pid,
    tail: () => out,
    alive,
    async stop(graceMs = 3000) {
      if (!alive()) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => { if (alive()) proc.kill('SIGKILL'); }, graceMs);
      await exited;
      clearTimeout(t);
    },
  };
}

/** A TCP port that was free a moment ago on 127.0.0.1 (the test helpers' own). */
export { freePort } from '../../hub/testing/hubProcess.ts';

/** Resolves once something accepts TCP on 127.0.0.1:port; throws after `timeoutMs`. */
export async function waitForPort(port: number, timeoutMs = 10_000, child?: Child): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child && !child.alive()) throw new Error(`${child.name} exited before listening:\n${child.tail()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms${child ? `:\n${child.tail()}` : ''}`);
}

/** Polls an HTTP URL on loopback until it answers 200. */
export async function waitForHttp200(url: string, timeoutMs = 30_000, child?: Child): Promise<void> {
  if (!url.startsWith('http://127.0.0.1')) throw new Error(`refusing non-loopback URL ${url}`);
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (child && !child.alive()) throw new Error(`${child.name} exited before ready:\n${child.tail()}`);
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (r.status === 200) return;
      last = `HTTP ${r.status}`;
    } catch (e) {
      last = (e as Error).message;
    }
    await sleep(100);
  }
  throw new Error(`${url} not ready after ${timeoutMs} ms (${last})${child ? `:\n${child.tail()}` : ''}`);
}

let clkTck = 0;
/** Kernel clock ticks per second, from `getconf CLK_TCK` (100 on most Linux builds). */
export function clockTicks(): number {
  if (!clkTck) {
    try { clkTck = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100; } catch { clkTck = 100; }
  }
  return clkTck;
}

/** utime+stime of a process (all threads), in microseconds. Resolution is one clock tick (10 ms). */
export function cpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // comm may contain spaces and parentheses: the fields start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1e6) / clockTicks();
}

/** CPU seconds of the whole machine (all processes: user, nice, system, irq, softirq; /proc/stat), or NaN off Linux. */
export function machineCpuSeconds(): number {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    return (f[0] + f[1] + f[2] + f[5] + f[6]) / clockTicks();
  } catch {
    return NaN;
  }
}

/** Voluntary context switches of a process, all its threads (each one a sleep: the thread waited for I/O or a lock). */
export function voluntarySwitches(pid: number): number {
  let n = 0;
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      n += Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      // the thread ended meanwhile
    }
  }
  return n;
}

/** Resident set size of a process in KiB (VmRSS). */
export function rssKiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(status);
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]);
}

/** Median of `n` RSS samples taken `gapMs` apart: single samples jump with allocator activity. */
export async function rssMedianKiB(pid: number, n = 5, gapMs = 300): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    if (i) await sleep(gapMs);
    xs.push(rssKiB(pid));
  }
  xs.sort((a, b) => a - b);
  return xs[Math.floor(xs.length / 2)];
}

/** Soft limit on open files of this process (read from /proc, since Node has no getrlimit). */
export function openFileLimit(): number {
  const limits = readFileSync('/proc/self/limits', 'utf8');
  const m = /Max open files\s+(\d+|unlimited)/.exec(limits);
  if (!m) return 1024;
  return m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1]);
}

/** The generator's own CPU since `since` (process.cpuUsage), in microseconds. */
export function selfCpuMicros(since?: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(since);
  return u.user + u.system;
}
