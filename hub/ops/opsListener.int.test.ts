import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import pino from 'pino';
import { startOpsListener, type OpsSource } from './opsListener.ts';
import { waitUntil } from '../testing/until.ts';

/**
 * GET over a raw socket that the client closes first. The ops worker closes every connection when
 * it stops, and a server-side close leaves the port in TIME_WAIT for up to 60 s, in which this uWS
 * build cannot listen on it again; the restart then waits for it (docs/operations.md "Ops port").
 */
function get(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(`GET ${path} HTTP/1.1\r\nhost: x\r\n\r\n`));
    let head = '';
    s.on('data', (d) => {
      head += d;
      const m = /^HTTP\/1\.1 (\d+)/.exec(head);
      if (m && head.includes('\r\n\r\n')) {
        s.destroy();
        resolve(Number(m[1]));
      }
    });
    s.on('error', reject);
  });
}

/** A logger whose lines the test reads. */
function capture() {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, new Writable({ write: (chunk, _enc, cb) => (lines.push(JSON.parse(String(chunk))), cb()) }));
  return { log, lines };
}

/** The main thread's side, answering like a ready hub; `hang` makes it never answer. */
function source(opts: { hang?: boolean } = {}): OpsSource & { counted: number } {
  const s = {
    counted: 0,
    readiness: () => (opts.hang ? new Promise<never>(() => {}) : Promise.resolve({ ready: true, body: '{"status":"ready","checks":{}}' })),
    countReadyRequests: (n: number) => void (s.counted += n),
    metrics: async () => 'orghub_x 1\n',
    contentType: 'text/plain; version=0.0.4; charset=utf-8',
  };
  return s;
}

/** The ops listener's own thread, real uWS and real HTTP; the hub's side is a plain object. */
describe('ops listener', () => {
  it('ops listener - a crashed worker is logged and started again on the same port', async () => {
    const { log, lines } = capture();
    const ops = await startOpsListener({ host: '127.0.0.1', port: 0, readyCacheMs: 1000, metricsCacheMs: 1000, source: source(), log });
    try {
      assert.equal(await get(ops.port, '/ready'), 200, 'positive control: it answers before the crash');
      ops.crash();
      await waitUntil('the crash logged', async () => lines.find((l) => l.msg === 'ops worker crashed; the ops port is closed until it restarts'));
      const crashed = lines.find((l) => l.msg?.toString().startsWith('ops worker crashed'))!;
      assert.equal(crashed.exitCode, 1);
      assert.match(String(crashed.error), /ops worker crash requested/);
      await assert.rejects(get(ops.port, '/ready'), 'the port is closed until the restart');
      await waitUntil('the restarted worker answers', async () => ((await get(ops.port, '/ready')) === 200 ? true : undefined));
      assert.equal(ops.restarts, 1);
    } finally {
      await ops.stop();
    }
    await assert.rejects(get(ops.port, '/health'), 'stopped: the port is closed');
  });

  it('ops listener - a main thread that does not answer gives 503 after the ask timeout, not a hang', async () => {
    const { log } = capture();
    const hung = await startOpsListener({ host: '127.0.0.1', port: 0, readyCacheMs: 1000, metricsCacheMs: 1000, askTimeoutMs: 300, source: source({ hang: true }), log });
    const fine = await startOpsListener({ host: '127.0.0.1', port: 0, readyCacheMs: 1000, metricsCacheMs: 1000, askTimeoutMs: 300, source: source(), log });
    try {
      const t0 = Date.now();
      const r = await fetch(`http://127.0.0.1:${hung.port}/ready`);
      assert.equal(r.status, 503);
      assert.deepEqual((await r.json()).checks, { hub: { status: 'down', error: "the hub's main thread did not answer within 300 ms" } });
      assert.ok(Date.now() - t0 < 2000);
      // Positive control: the same listener over a main thread that answers.
      assert.equal((await fetch(`http://127.0.0.1:${fine.port}/ready`)).status, 200);
      assert.equal((await fetch(`http://127.0.0.1:${fine.port}/health`)).status, 200);
    } finally {
      await hung.stop();
      await fine.stop();
    }
  });

  it('ops listener - /health on the ops port is 503 while the main thread is blocked', async () => {
    // A child whose main thread spins for 4 s right after printing the port: the ops thread still answers.
    const script = `
      import { startOpsListener } from ${JSON.stringify(fileURLToPath(new URL('./opsListener.ts', import.meta.url)))};
      import pino from 'pino';
      const ops = await startOpsListener({ host: '127.0.0.1', port: 0, readyCacheMs: 1000, metricsCacheMs: 1000, askTimeoutMs: 300, log: pino({ level: 'silent' }),
        source: { readiness: async () => ({ ready: true, body: '{}' }), countReadyRequests() {}, metrics: async () => '', contentType: 'text/plain' } });
      process.stdout.write('port ' + ops.port + '\\n');
      const end = Date.now() + 4000;
      while (Date.now() < end);
      process.exit(0);`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: fileURLToPath(new URL('../..', import.meta.url)) });
    try {
      const port = await new Promise<number>((resolve, reject) => {
        child.stdout.on('data', (d) => {
          const m = /port (\d+)/.exec(String(d));
          if (m) resolve(Number(m[1]));
        });
        let err = '';
        child.stderr.on('data', (d) => (err += d));
        child.once('exit', (code) => reject(new Error(`child exited ${code}: ${err}`)));
      });
      const t0 = Date.now();
      const health = await fetch(`http://127.0.0.1:${port}/health`);
      assert.equal(health.status, 503, 'liveness: a main thread that does not answer is not alive');
      assert.equal((await health.json()).status, 'unresponsive');
      assert.ok(Date.now() - t0 < 2000, 'answered by the ops thread while the main thread spins');
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('ops listener - the ops thread runs at ORGHUB_OPS_NICE, the rest of the process at its own priority', async () => {
    /** Threads of this process at niceness 19 (field 19 of /proc/<pid>/task/<tid>/stat). */
    const niced = () => readdirSync('/proc/self/task').filter((tid) => readFileSync(`/proc/self/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' ')[16] === '19').length;
    const { log } = capture();
    const plain = await startOpsListener({ host: '127.0.0.1', port: 0, readyCacheMs: 1000, metricsCacheMs: 1000, source: source(), log });
    try {
      assert.equal(niced(), 0, 'positive control: nice 0 leaves every thread as it was');
    } finally {
      await plain.stop();
    }
    const nice = await startOpsListener({ host: '127.0.0.1', port: 0, readyCacheMs: 1000, metricsCacheMs: 1000, nice: 19, source: source(), log });
    try {
      assert.equal(niced(), 1, 'the ops thread alone');
      assert.equal((await fetch(`http://127.0.0.1:${nice.port}/ready`)).status, 200);
    } finally {
      await nice.stop();
    }
  });

  it('ops listener - process.exit with the worker listening ends with the status asked for (a torn-down uWS worker would abort, 134)', () => {
    const script = `
      import { startOpsListener } from ${JSON.stringify(fileURLToPath(new URL('./opsListener.ts', import.meta.url)))};
      import pino from 'pino';
      const ops = await startOpsListener({ host: '127.0.0.1', port: 0, readyCacheMs: 1000, metricsCacheMs: 1000, log: pino({ level: 'silent' }),
        source: { readiness: async () => ({ ready: true, body: '{}' }), countReadyRequests() {}, metrics: async () => '', contentType: 'text/plain' } });
      const r = await fetch('http://127.0.0.1:' + ops.port + '/ready');
      process.stdout.write('answered ' + r.status + '\\n');
      process.exit(7);`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000, cwd: fileURLToPath(new URL('../..', import.meta.url)) });
    assert.match(r.stdout, /answered 200/, r.stderr);
    assert.equal(r.status, 7, r.stderr);
  });
});
