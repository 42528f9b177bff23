/**
 * The ops listener's thread (ORGHUB_OPS_PORT): its own uWS app and event loop, so a flood of
 * `/health`, `/ready` or `/metrics` is parsed and answered here, not on the loop that serves
 * tenants. It owns no dependency: readiness and the metrics text come from the main thread
 * (opsListener.ts), asked for at most once per freshness window however many requests wait.
 */
import uws from '@trufflesuite/uws-js-unofficial';
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { NOT_FOUND_BODY, readyFreshForMs, type FromWorker, type OpsWorkerData, type ToWorker } from './messages.ts';
import { createRefresher } from './refresher.ts';

const data = workerData as OpsWorkerData;
const port = parentPort!;

// On a busy machine a second thread takes CPU from the tenants' loop unless it yields: Linux nices
// threads one by one, and /proc/thread-self names this one (elsewhere the thread keeps the
// process's priority).
if (data.nice > 0) {
  try {
    setPriority(Number(readlinkSync('/proc/thread-self').split('/').pop()), data.nice);
  } catch {
    /* not Linux: no per-thread priority */
  }
}
const post = (m: FromWorker) => port.postMessage(m);
// Untyped in uWS 20.30's d.ts, present in its binary: closes the listen socket and every connection.
const app = uws.App() as uws.TemplatedApp & { close(): void };

let readyRequests = 0;
const ask = (what: 'ready' | 'metrics' | 'health') => {
  post({ type: 'ask', what, readyRequests });
  readyRequests = 0;
};
const ready = createRefresher<{ ready: boolean; body: string }>({ freshForMs: (r) => readyFreshForMs(r.ready, data.readyCacheMs), ask: () => ask('ready'), timeoutMs: data.askTimeoutMs });
const metrics = createRefresher<{ ok: boolean; text: string; contentType: string }>({ freshForMs: () => data.metricsCacheMs, ask: () => ask('metrics'), timeoutMs: data.askTimeoutMs });
// Liveness here means the main thread answers: a hub whose tenant loop hangs must not look alive.
const alive = createRefresher<true>({ freshForMs: () => 1000, ask: () => ask('health'), timeoutMs: data.askTimeoutMs });
const unresponsive = `the hub's main thread did not answer within ${data.askTimeoutMs} ms`;

/** Answers once, after an await, unless the client went away meanwhile. */
function later(res: uws.HttpResponse, answer: (write: (status: string, type: string, body: string) => void) => void): void {
  let aborted = false;
  res.onAborted(() => (aborted = true));
  answer((status, type, body) => {
    if (!aborted) res.cork(() => res.writeStatus(status).writeHeader('content-type', type).end(body));
  });
}

app.get('/health', (res) =>
  later(res, (write) => alive.get((ok) => (ok ? write('200 OK', 'application/json', '{"status":"ok"}') : write('503 Service Unavailable', 'application/json', JSON.stringify({ status: 'unresponsive', message: unresponsive }))))),
);
app.get('/ready', (res) => {
  readyRequests++;
  later(res, (write) =>
    ready.get((r) => {
      if (!r) return write('503 Service Unavailable', 'application/json', JSON.stringify({ status: 'not_ready', checks: { hub: { status: 'down', error: unresponsive } } }));
      write(r.ready ? '200 OK' : '503 Service Unavailable', 'application/json', r.body);
    }),
  );
});
app.get('/metrics', (res) =>
  later(res, (write) =>
    metrics.get((m) => {
      if (!m) return write('503 Service Unavailable', 'text/plain', `${unresponsive}\n`);
      write(m.ok ? '200 OK' : '500 Internal Server Error', m.contentType, m.text);
    }),
  ),
);
app.any('/*', (res) => {
  res.writeStatus('404 Not Found').writeHeader('content-type', 'application/json').end(NOT_FOUND_BODY);
});

/**
 * Closing every socket first lets the thread end cleanly: a worker torn down with uWS sockets open
 * aborts the whole process. The thread then ends by itself once the closes are done; a
 * `process.exit` here would skip them and leave the port bound, so a restart could not listen.
 */
function close(code: number): void {
  process.exitCode = code;
  app.close();
  Atomics.store(data.closed, 0, 1);
  Atomics.notify(data.closed, 0);
  port.close();
}

process.on('uncaughtException', (err) => {
  post({ type: 'crashed', message: err?.stack ?? String(err) });
  close(1);
});

port.on('message', (m: ToWorker) => {
  switch (m.type) {
    case 'ready':
      ready.settle({ ready: m.ready, body: m.body });
      alive.settle(true);
      return;
    case 'metrics':
      metrics.settle({ ok: m.ok, text: m.text, contentType: m.contentType });
      alive.settle(true);
      return;
    case 'alive':
      alive.settle(true);
      return;
    case 'stop':
      return close(0);
    case 'crash':
      setImmediate(() => {
        throw new Error('ops worker crash requested (test hook)');
      });
  }
});

app.listen(data.host, data.port, (s) => {
  if (!s) {
    post({ type: 'listen_failed' });
    return close(0);
  }
  post({ type: 'listening', port: uws.us_socket_local_port(s as unknown as uws.us_socket) });
});
