/**
 * What the ops worker (opsWorker.ts) and the hub's main thread (opsListener.ts) say to each other.
 * Every ask carries the `/ready` requests the worker answered since its last message, so
 * `orghub_ready_requests_total` is counted on the main thread without a message per request.
 */
export type FromWorker =
  | { type: 'listening'; port: number }
  | { type: 'listen_failed' }
  | { type: 'ask'; what: 'ready' | 'metrics' | 'health'; readyRequests: number }
  /** Posted from the worker's uncaughtException handler, just before it closes its sockets and exits 1. */
  | { type: 'crashed'; message: string };

export type ToWorker =
  | { type: 'ready'; ready: boolean; body: string }
  | { type: 'metrics'; ok: boolean; text: string; contentType: string }
  | { type: 'alive' }
  | { type: 'stop' }
  /** Test hook: the worker throws, so the crash path (log, restart) can be proven end to end. */
  | { type: 'crash' };

export interface OpsWorkerData {
  host: string;
  port: number;
  /** A passing readiness is served this long; a failing one at most 200 ms (as cachedReadiness does). */
  readyCacheMs: number;
  /** A rendered /metrics text is served this long before the worker asks for a new one. */
  metricsCacheMs: number;
  /** Readers waiting on the main thread longer than this get 503. */
  askTimeoutMs: number;
  /** Niceness of the worker's thread (0-19, Linux): under CPU contention it yields to the tenants' loop. */
  nice: number;
  /** Set to 1 by the worker once its sockets are closed, so the main thread's exit hook can wait for it. */
  closed: Int32Array;
}

/** The API's 404 (hub/http/opsApi.ts answers the same on the main port). */
export const NOT_FOUND_BODY = '{"error":{"code":"not_found","message":"no such endpoint"}}';

/** How long a readiness answer is served without asking again: a failing one briefly, so recovery shows quickly. */
export function readyFreshForMs(ready: boolean, ttlMs: number): number {
  return ready ? ttlMs : Math.min(ttlMs, 200);
}
