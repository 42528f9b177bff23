import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import SwaggerParser from '@apidevtools/swagger-parser';
import { loadConfig } from '../config/config.ts';
import { hubExtensions } from '../extensions.ts';
import { createLogger } from '../log.ts';
import { startHub, type RunningHub } from '../server.ts';
import { createTestIssuer } from '../testing/issuer.ts';
import { freePort } from '../testing/hubProcess.ts';
import { OPENAPI_PATH, openApiValidator } from '../testing/openapi.ts';
import { openApiPath } from './routes.ts';

/** uWS method names → OpenAPI operation keys (`ws` is an HTTP GET upgrade). */
const OPERATION: Record<string, string> = { get: 'get', post: 'post', put: 'put', patch: 'patch', del: 'delete', options: 'options', head: 'head', trace: 'trace', ws: 'get' };
/** Mounted on purpose and not an endpoint: the catch-all that answers 404 `not_found` for unknown paths. */
const NOT_ENDPOINTS = new Set(['any /*']);

/**
 * docs/openapi.yaml is a valid OpenAPI document and describes exactly the routes a real hub mounts,
 * with the same extensions as hub/main.ts (hub/extensions.ts), MQTT over WebSocket included.
 */
describe('openapi', () => {
  let hub: RunningHub;
  let api: { paths: Record<string, Record<string, unknown>> };
  let issuer: Awaited<ReturnType<typeof createTestIssuer>>;

  before(async () => {
    api = (await SwaggerParser.validate(OPENAPI_PATH)) as unknown as typeof api;
    issuer = await createTestIssuer();
    const config = loadConfig({
      ...process.env,
      ...issuer.env,
      ORGHUB_PORT: '0',
      ORGHUB_HOST: '127.0.0.1',
      ORGHUB_MQTT_PORT: String(await freePort()),
      ORGHUB_EVENT_STORE: 'none',
      ORGHUB_LOG_LEVEL: 'silent',
    });
    hub = await startHub(config, createLogger('silent'), { extensions: hubExtensions() });
  });
  after(async () => {
    await hub?.stop();
  });

  it('openapi - every route the hub mounts is described, with its method', () => {
    const missing: string[] = [];
    for (const r of hub.routes) {
      if (NOT_ENDPOINTS.has(`${r.method} ${r.pattern}`)) continue;
      const path = openApiPath(r.pattern);
      const ops = api.paths[path];
      const wanted = r.method === 'any' ? undefined : OPERATION[r.method];
      const described = ops !== undefined && (wanted === undefined ? Object.keys(ops).some((k) => Object.values(OPERATION).includes(k)) : ops[wanted] !== undefined);
      if (!described) missing.push(`${(wanted ?? 'any').toUpperCase()} ${path} (mounted as app.${r.method}('${r.pattern}')): add paths['${path}'].${wanted ?? '<method>'} to docs/openapi.yaml`);
    }
    assert.deepEqual(missing, [], `routes mounted but not in docs/openapi.yaml:\n  ${missing.join('\n  ')}`);
    // Positive control: the recording saw routes from each mounting module and from an extension.
    const seen = new Set(hub.routes.map((r) => `${r.method} ${r.pattern}`));
    for (const r of ['post /v1/publish', 'get /v1/audit', 'get /health', 'ws /v1/ws', 'ws /mqtt']) assert.ok(seen.has(r), `recorded ${r}`);
  });

  it('openapi - every described operation is mounted (no stale documentation)', () => {
    const mounted = new Set(hub.routes.map((r) => `${OPERATION[r.method] ?? r.method} ${openApiPath(r.pattern)}`));
    const stale: string[] = [];
    for (const [path, ops] of Object.entries(api.paths)) {
      for (const op of Object.keys(ops)) {
        if (!Object.values(OPERATION).includes(op)) continue; // parameters, summary, ...
        if (!mounted.has(`${op} ${path}`)) stale.push(`${op.toUpperCase()} ${path}`);
      }
    }
    assert.deepEqual(stale, [], `described in docs/openapi.yaml but not mounted: ${stale.join(', ')}`);
  });

  it('openapi - real ops responses match their schemas', async () => {
    const check = openApiValidator();
    const base = `http://127.0.0.1:${hub.port}`;
    const health = await fetch(`${base}/health`);
    assert.equal(check('get', '/health', health.status, await health.json()), undefined);
    const ready = await fetch(`${base}/ready`);
    assert.equal(check('get', '/ready', ready.status, await ready.json()), undefined);
    const noToken = await fetch(`${base}/v1/devices`);
    assert.equal(noToken.status, 401);
    assert.equal(check('get', '/v1/devices', 401, await noToken.json()), undefined);
    // Without Postgres (ORGHUB_EVENT_STORE=none) the query routes exist and say so.
    const off = await fetch(`${base}/v1/devices`, { headers: { authorization: `Bearer ${await issuer.token('org-x', 'admin')}` } });
    assert.equal(off.status, 503);
    const body = await off.json();
    assert.equal(body.error.code, 'unavailable');
    assert.equal(check('get', '/v1/devices', 503, body), undefined);
  });
});
