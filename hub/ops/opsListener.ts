import { Worker } from 'node:worker_threads';
import { ConfigError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { FromWorker, OpsWorkerData, ToWorker } from './messages.ts';

/** What the main thread lends the ops worker: the only work a flood on the ops port can cause here. */
export interface OpsSource {
  /** Cached readiness (hub/http/opsApi.ts `cachedReadiness`). */
  readiness(): Promise<{ ready: boolean; body: string }>;
  /** Adds `/ready` requests the worker answered (orghub_ready_requests_total). */
  countReadyRequests(n: number): void;
  /** The Prometheus text of the registry. */
  metrics(): Promise<string>;
  contentType: string;
}

export interface OpsListenerOptions extends Omit<OpsWorkerData, 'askTimeoutMs' | 'closed' | 'nice'> {
  source: OpsSource;
  log: Logger;
  /** Readers on the ops port wait this long for the main thread before a 503; default 3000. */
  askTimeoutMs?: number;
  /** ORGHUB_OPS_NICE; default 0. */
  nice?: number;
}

export interface OpsListener {
  /** The bound port (the configured one, or the one picked for 0 in tests). */
  readonly port: number;
  /** Times the worker was started again after a crash. */
  readonly restarts: number;
  /** Closes the ops port and waits for the worker to end. */
  stop(): Promise<void>;
  /** Test hook: makes the running worker throw, to prove the crash path. */
  crash(): void;
}

// Node 20 does not apply the `--import tsx` loader to a worker's modules, so the worker registers
// tsx itself before importing its `.ts` entry.
// Both resolved here: an eval'd worker would resolve `tsx` from the process's working directory.
const WORKER = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((tsx) => tsx.register()).then(() => import(${JSON.stringify(new URL('./opsWorker.ts', import.meta.url).href)}))`;

/** Wait before starting a crashed worker again: 1 s, doubling per crash in a row, at most 30 s. */
export function restartDelayMs(crashesInARow: number): number {
  return Math.min(30_000, 1000 * 2 ** Math.max(0, crashesInARow - 1));
}

/**
 * Runs `/health`, `/ready` and `/metrics` on their own port in a worker thread (docs/operations.md
 * "Ops port"). A crashed worker is logged and started again on the same port after a backoff
 * (1 s doubling to 30 s; reset once one has run a minute); while it is down the port is closed,
 * so probes fail and the node reads as not ready, which is the truth about its ops endpoints.
 */
export async function startOpsListener(opts: OpsListenerOptions): Promise<OpsListener> {
  const { source, log } = opts;
  // Set by the worker once its sockets are closed (see onExit below).
  const closed = new Int32Array(new SharedArrayBuffer(4));
  const data: OpsWorkerData = { host: opts.host, port: opts.port, readyCacheMs: opts.readyCacheMs, metricsCacheMs: opts.metricsCacheMs, askTimeoutMs: opts.askTimeoutMs ?? 3000, nice: opts.nice ?? 0, closed };
  let worker: Worker | undefined;
  let stopping = false;
  let restarts = 0;
  let crashesInARow = 0;
  let restartTimer: NodeJS.Timeout | undefined;

  const answer = (w: Worker, m: FromWorker & { type: 'ask' }) => {
    if (m.readyRequests) source.countReadyRequests(m.readyRequests);
    const send = (reply: ToWorker) => w.postMessage(reply);
    if (m.what === 'health') return send({ type: 'alive' });
    if (m.what === 'ready') return void source.readiness().then((r) => send({ type: 'ready', ready: r.ready, body: r.body }));
    source.metrics().then(
      (text) => send({ type: 'metrics', ok: true, text, contentType: source.contentType }),
      (err) => {
        log.error({ err }, 'metrics failed');
        send({ type: 'metrics', ok: false, text: '', contentType: 'text/plain' });
      },
    );
  };

  /** Starts one worker; resolves with its port, rejects when it cannot listen or dies first. */
  const spawn = (port: number) =>
    new Promise<number>((resolve, reject) => {
      Atomics.store(closed, 0, 0);
      const w = new Worker(WORKER, { eval: true, workerData: { ...data, port } });
      worker = w;
      let listening = false;
      let startedAt = 0;
      let crash: string | undefined;
      w.on('message', (m: FromWorker) => {
        if (m.type === 'ask') return answer(w, m);
        if (m.type === 'listening') {
          listening = true;
          startedAt = Date.now();
          return resolve(m.port);
        }
        if (m.type === 'listen_failed') return reject(new ConfigError(`cannot listen on ${opts.host}:${port} (ORGHUB_OPS_PORT)`));
        if (m.type === 'crashed') crash = m.message;
      });
      w.on('error', (err) => {
        crash = err.stack ?? String(err);
      });
      w.on('exit', (code) => {
        if (worker === w) worker = undefined;
        if (!listening) return reject(new Error(`the ops worker ended before listening (exit ${code})${crash ? `: ${crash}` : ''}`));
        if (stopping || code === 0) return;
        crashesInARow = Date.now() - startedAt > 60_000 ? 1 : crashesInARow + 1;
        const delayMs = restartDelayMs(crashesInARow);
        log.error({ exitCode: code, error: crash, restartInMs: delayMs }, 'ops worker crashed; the ops port is closed until it restarts');
        restartTimer = setTimeout(restart, delayMs);
      });
    });

  const restart = () => {
    if (stopping) return;
    restarts++;
    spawn(boundPort).then(
      () => log.warn({ port: boundPort, restarts }, 'ops worker restarted'),
      (err) => {
        crashesInARow++;
        const delayMs = restartDelayMs(crashesInARow);
        log.error({ err: (err as Error).message, restartInMs: delayMs }, 'ops worker restart failed');
        restartTimer = setTimeout(restart, delayMs);
      },
    );
  };

  const boundPort = await spawn(opts.port);
  // A worker torn down with uWS sockets open aborts the process (exit 134, not the status asked
  // for), so on any process.exit the worker closes its sockets first; it takes well under 1 ms.
  const onExit = () => {
    if (!worker) return;
    worker.postMessage({ type: 'stop' } satisfies ToWorker);
    Atomics.wait(closed, 0, 0, 1000);
  };
  process.on('exit', onExit);
  log.info({ port: boundPort, host: opts.host }, 'ops listener on its own thread');

  return {
    port: boundPort,
    get restarts() {
      return restarts;
    },
    async stop() {
      stopping = true;
      clearTimeout(restartTimer);
      const w = worker;
      if (w) {
        await new Promise<void>((resolve) => {
          const late = setTimeout(() => {
            log.warn('ops worker did not stop within 2 s; left to end with the process');
            w.unref();
            resolve();
          }, 2000);
          w.once('exit', () => {
            clearTimeout(late);
            resolve();
          });
          w.postMessage({ type: 'stop' } satisfies ToWorker);
        });
      }
      process.off('exit', onExit);
    },
    crash() {
      worker?.postMessage({ type: 'crash' } satisfies ToWorker);
    },
  };
}
