/**
 * The routes a hub actually mounts, recorded by wrapping the uWS app's route methods. The OpenAPI
 * coverage test (docs/openapi.test.ts) compares this list with docs/openapi.yaml, so a route added
 * anywhere (an http module, an extension such as the MQTT bridge) cannot go undocumented.
 */
import type { TemplatedApp } from '@trufflesuite/uws-js-unofficial';

export const ROUTE_METHODS = ['get', 'post', 'put', 'patch', 'del', 'options', 'head', 'connect', 'trace', 'any', 'ws'] as const;
export type RouteMethod = (typeof ROUTE_METHODS)[number];

/** One mounted route: the uWS method name and pattern as given (`/v1/devices/:id`). */
export interface MountedRoute {
  method: RouteMethod;
  pattern: string;
}

/** Returns a proxy of `app` that records every route mounted through it, and the (live) list. */
export function recordRoutes(app: TemplatedApp): { app: TemplatedApp; routes: MountedRoute[] } {
  const routes: MountedRoute[] = [];
  const methods = new Set<string>(ROUTE_METHODS);
  const proxy: TemplatedApp = new Proxy(app, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown;
      if (typeof value !== 'function') return value;
      if (typeof prop === 'string' && methods.has(prop)) {
        return (pattern: string, ...rest: unknown[]) => {
          routes.push({ method: prop as RouteMethod, pattern });
          (value as (...a: unknown[]) => unknown).call(target, pattern, ...rest);
          return proxy; // uWS route methods chain
        };
      }
      return (value as (...a: unknown[]) => unknown).bind(target);
    },
  });
  return { app: proxy, routes };
}

/** A uWS pattern as an OpenAPI path: `:id` becomes `{id}`. */
export function openApiPath(pattern: string): string {
  return pattern.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}
