import type { TemplatedApp } from '@trufflesuite/uws-js-unofficial';
import { isValidTopic } from '../acl/topic.ts';
import { HubError } from '../errors.ts';
import { planRecovery } from '../history/history.ts';
import type { HistoryRecorder } from '../history/subscription.ts';
import { authRoute, type RouteDeps } from './authRoute.ts';

export interface HistoryApiDeps extends RouteDeps {
  app: TemplatedApp;
  /** Absent when no namespace keeps history: every topic is then `invalid`. */
  history?: HistoryRecorder;
  maxRecover: number;
}

/**
 * `GET /v1/history?topic=&since=&epoch=&limit=`: the messages of a history topic after offset
 * `since` (default 0: everything kept), at most `limit` (default and cap ORGHUB_HISTORY_MAX_RECOVER),
 * with the stream's position. With `epoch`, `recovered` says whether nothing between `since` and
 * the answer was lost, exactly as for a WebSocket resume. Needs a sub grant on the topic.
 */
export function mountHistoryApi(deps: HistoryApiDeps): void {
  deps.app.get(
    '/v1/history',
    authRoute(deps, 0, false, async ({ ctx, query }) => {
      const topic = query.get('topic') ?? '';
      if (!isValidTopic(topic)) throw new HubError('bad_topic', 'topic must be a concrete topic');
      const history = deps.history;
      const r = history?.retention(topic);
      if (!history || !r) throw new HubError('invalid', `"${topic}" is not in a namespace with history (ORGHUB_HISTORY_NAMESPACES)`);
      if (!ctx.grants.canSubscribe(topic)) throw new HubError('forbidden', `subscribe to "${topic}" is not granted`);
      const int = (name: string, dflt: number) => {
        const v = query.get(name);
        if (v === null) return dflt;
        if (!/^\d{1,15}$/.test(v)) throw new HubError('invalid', `${name} must be a non-negative integer`);
        return Number(v);
      };
      const since = int('since', 0);
      const limit = Math.min(int('limit', deps.maxRecover), deps.maxRecover);
      const epoch = query.get('epoch');
      const read = await history.store.read(ctx.principal.org, topic, since, limit, r).catch((err) => {
        // A refusal with a code (the org's topic cap: reading a topic starts its stream) keeps it.
        if (err instanceof HubError) throw err;
        throw new HubError('unavailable', 'history store unavailable');
      });
      const plan = epoch !== null ? planRecovery({ offset: since, epoch }, read.top, read.earliest) : undefined;
      const utf8 = new TextDecoder();
      return {
        status: 200,
        body: {
          topic,
          offset: read.top.offset,
          epoch: read.top.epoch,
          earliest: read.earliest,
          ...(plan ? { recovered: plan.recovered, ...(plan.missed !== undefined ? { missed: plan.missed } : {}) } : {}),
          messages: read.messages.map((m) => ({
            offset: m.offset,
            ...(m.contentType === 'json' ? { data: JSON.parse(utf8.decode(m.payload)) } : { data: Buffer.from(m.payload).toString('base64'), enc: 'base64' }),
            ...(m.from ? { from: m.from } : {}),
            ts: m.ts,
          })),
        },
      };
    }),
  );
}
