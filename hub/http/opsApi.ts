import type { TemplatedApp } from '@trufflesuite/uws-js-unofficial';
import type { Registry } from 'prom-client';
import type { Logger } from '../log.ts';

/** A dependency that `/ready` reports by name. `detail` is shown as-is (no secrets). */
export interface ReadinessCheck {
  name: string;
  check(): Promise<{ up: boolean; detail?: Record<string, unknown> }>;
}

/** `/health` (process alive), `/ready` (every dependency up, each named) and `/metrics`. */
export function mountOpsApi(app: TemplatedApp, checks: ReadinessCheck[], registry: Registry, log: Logger): void {
  app.get('/health', (res) => {
    res.writeHeader('content-type', 'application/json').end('{"status":"ok"}');
  });

  app.get('/ready', (res) => {
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    void Promise.all(
      checks.map(async (c) => {
        try {
          const r = await Promise.race([c.check(), new Promise<{ up: boolean; detail?: Record<string, unknown> }>((resolve) => setTimeout(() => resolve({ up: false, detail: { error: 'timeout' } }), 1500).unref())]);
          return [c.name, { status: r.up ? 'up' : 'down', ...r.detail }] as const;
        } catch (err) {
          return [c.name, { status: 'down', error: (err as Error).message }] as const;
        }
      }),
    ).then((results) => {
      if (aborted) return;
      const ready = results.every(([, r]) => r.status === 'up');
      const body = JSON.stringify({ status: ready ? 'ready' : 'not_ready', checks: Object.fromEntries(results) });
      res.cork(() => res.writeStatus(ready ? '200 OK' : '503 Service Unavailable').writeHeader('content-type', 'application/json').end(body));
    });
  });

  app.get('/metrics', (res) => {
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    registry.metrics().then(
      (text) => {
        if (!aborted) res.cork(() => res.writeHeader('content-type', registry.contentType).end(text));
      },
      (err) => {
        log.error({ err }, 'metrics failed');
        if (!aborted) res.cork(() => res.writeStatus('500 Internal Server Error').end());
      },
    );
  });

  app.any('/*', (res) => {
    res.writeStatus('404 Not Found').writeHeader('content-type', 'application/json').end('{"error":{"code":"not_found","message":"no such endpoint"}}');
  });
}
