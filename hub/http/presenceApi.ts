import type { TemplatedApp } from '@trufflesuite/uws-js-unofficial';
import { isValidTopic } from '../acl/topic.ts';
import type { ClientContext } from '../core/context.ts';
import { HubError } from '../errors.ts';
import { ORG_SCOPE, presenceTopic, topicScope, type PresenceStore } from '../presence/presence.ts';
import { authRoute, type RouteDeps } from './authRoute.ts';

export interface PresenceApiDeps extends RouteDeps {
  app: TemplatedApp;
  /** Absent with ORGHUB_PRESENCE=off: the routes answer 503 `unavailable`. */
  store?: PresenceStore;
  namespaces: ReadonlySet<string>;
}

/**
 * `GET /v1/presence?topic=` (who is online; no topic: the whole org) and
 * `GET /v1/presence_stats?topic=` (counts only). Reading a scope needs the grant to subscribe to its
 * `$presence/...` topic, the same grant that receives its join and leave events.
 */
export function mountPresenceApi(deps: PresenceApiDeps): void {
  const storeOf = (): PresenceStore => {
    if (!deps.store) throw new HubError('unavailable', 'presence is off on this hub (ORGHUB_PRESENCE=off)');
    return deps.store;
  };
  const scopeOf = (ctx: ClientContext, query: URLSearchParams): string => {
    const topic = query.get('topic');
    let scope = ORG_SCOPE;
    if (topic !== null) {
      if (!isValidTopic(topic)) throw new HubError('bad_topic', 'topic must be a concrete topic (no wildcard)');
      scope = topicScope(topic, deps.namespaces) ?? '';
      if (!scope) throw new HubError('invalid', `"${topic}" is not in a namespace with presence (ORGHUB_PRESENCE_NAMESPACES)`);
    }
    if (!ctx.grants.canSubscribe(presenceTopic(scope))) throw new HubError('forbidden', `presence of "${scope}" needs a sub grant on ${presenceTopic(scope)}`);
    return scope;
  };
  deps.app.get(
    '/v1/presence',
    authRoute(deps, 0, false, async ({ ctx, query }) => {
      const scope = scopeOf(ctx, query);
      const list = await storeOf().list(ctx.principal.org, scope).catch(() => {
        throw new HubError('unavailable', 'presence store unavailable');
      });
      return { status: 200, body: { scope, ...list, entries: list.entries.map((e) => ({ ...e, since: new Date(e.since).toISOString() })) } };
    }),
  );
  deps.app.get(
    '/v1/presence_stats',
    authRoute(deps, 0, false, async ({ ctx, query }) => {
      const scope = scopeOf(ctx, query);
      const { connections, users, truncated } = await storeOf().list(ctx.principal.org, scope).catch(() => {
        throw new HubError('unavailable', 'presence store unavailable');
      });
      return { status: 200, body: { scope, connections, users, truncated } };
    }),
  );
}
