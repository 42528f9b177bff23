import type { WebSocket } from '@trufflesuite/uws-js-unofficial';
import { parsePattern } from '../../acl/topic.ts';
import type { BusMessage } from '../../bus/bus.ts';
import { HubError } from '../../errors.ts';
import { deviceOfCommandTopic, isReservedTopic } from '../../fleet/fleet.ts';
import { openHistorySubscription, type HistorySubscription } from '../../history/subscription.ts';
import { jsonFrame, msgpackFrame } from './fanout.ts';
import type { Conn, Id, WsDeps } from './wsTypes.ts';

export interface WsSubscriptions {
  /** `sub`: a plain pattern (fan-out), a history topic (offsets, resume) or a device's `$commands` topic. */
  subscribe(ws: WebSocket<Conn>, c: Conn, id: Id, pattern: string, since?: { offset: number; epoch: string }): Promise<void>;
  unsubscribe(ws: WebSocket<Conn>, c: Conn, pattern: string): void;
}

/**
 * A connection's subscriptions, of the three kinds above; each holds a slot of the org's per-node
 * pattern cap (except `$commands`) and is counted against ORGHUB_MAX_SUBSCRIPTIONS.
 */
export function wsSubscriptions(
  deps: WsDeps,
  io: { send(ws: WebSocket<Conn>, frame: object): void; ok(ws: WebSocket<Conn>, id: Id, extra?: object): void },
): WsSubscriptions {
  const { fanout, audit, log, limits, rateLimits } = deps;
  const { send, ok } = io;

  const sendMsgs = (ws: WebSocket<Conn>, c: Conn, pattern: string, msgs: BusMessage[]) => {
    if (c.closed || msgs.length === 0) return;
    if (c.enc === 'json') ws.send(jsonFrame(JSON.stringify(pattern), msgs), false);
    else ws.send(msgpackFrame(pattern, msgs), true);
  };

  /**
   * Recovered messages: resumes that shared one history read share the array, so its frame is
   * encoded once per encoding (and as bytes, so uWS does not convert the text for every socket).
   */
  const recoveredFrames = new WeakMap<BusMessage[], { pattern: string; json?: Buffer; msgpack?: Uint8Array }>();
  const sendRecovered = (ws: WebSocket<Conn>, c: Conn, pattern: string, msgs: BusMessage[]) => {
    if (c.closed || msgs.length === 0) return;
    let f = recoveredFrames.get(msgs);
    if (!f || f.pattern !== pattern) recoveredFrames.set(msgs, (f = { pattern }));
    if (c.enc === 'json') ws.send((f.json ??= Buffer.from(jsonFrame(JSON.stringify(pattern), msgs))), false);
    else ws.send((f.msgpack ??= msgpackFrame(pattern, msgs)), true);
  };

  /**
   * A topic with history: recovered messages (for `since`) follow the `ok`, then live ones, in
   * offset order and exactly once (hub/history/subscription.ts).
   */
  const subscribeHistory = async (ws: WebSocket<Conn>, c: Conn, id: Id, pattern: string, since?: { offset: number; epoch: string }) => {
    const held = (c.history ??= new Map());
    held.set(pattern, null);
    let hs: HistorySubscription;
    try {
      hs = await openHistorySubscription({ recorder: deps.history!, bus: deps.fanout.bus, log, org: c.principal.org, topic: pattern, since, maxRecover: deps.maxRecover ?? 10_000 });
    } catch (err) {
      if (held.get(pattern) === null) {
        held.delete(pattern);
        rateLimits.dropPattern(c.principal.org, pattern);
      }
      throw err;
    }
    if (c.closed || held.get(pattern) !== null) return hs.close();
    held.set(pattern, hs);
    deps.presence?.subscribed(c.session, pattern);
    ws.cork(() => {
      const extra: Record<string, unknown> = { offset: hs.position.offset, epoch: hs.position.epoch };
      if (hs.recovered !== undefined) extra.recovered = hs.recovered;
      if (hs.missed !== undefined) extra.missed = hs.missed;
      ok(ws, id, extra);
      sendRecovered(ws, c, pattern, hs.messages);
    });
    hs.start((msgs) => {
      if (!c.closed) ws.cork(() => sendMsgs(ws, c, pattern, msgs));
    });
  };

  const subscribe = async (ws: WebSocket<Conn>, c: Conn, id: Id, pattern: string, since?: { offset: number; epoch: string }) => {
    parsePattern(pattern);
    if (!c.grants.canSubscribe(pattern)) {
      audit.record(c.principal.org, 'subscribe.denied', { pattern, transport: 'ws' }, { actor: c.principal.sub, session: c.session });
      throw new HubError('forbidden', `subscribe to "${pattern}" is not granted`);
    }
    if (c.subs.includes(pattern) || c.fleet?.has(pattern) || c.history?.has(pattern)) return ok(ws, id);
    if (c.subs.length + (c.fleet?.size ?? 0) + (c.history?.size ?? 0) >= limits.maxSubscriptions) {
      audit.record(c.principal.org, 'limit.hit', { limit: 'subscriptions', max: limits.maxSubscriptions, transport: 'ws' }, { actor: c.principal.sub, session: c.session });
      throw new HubError('limit', `at most ${limits.maxSubscriptions} subscriptions per connection`);
    }
    if (isReservedTopic(pattern)) return subscribeCommands(ws, c, id, pattern);
    const withHistory = deps.history?.retention(pattern) !== undefined;
    if (since && !withHistory) throw new HubError('invalid', `"since" needs a topic of a namespace with history (ORGHUB_HISTORY_NAMESPACES); "${pattern}" has none`);
    // A history subscription holds a bus subscription too, so it counts against the org's per-node
    // pattern cap like any other; the hold is dropped by whoever removes the pattern from c.history.
    if (!rateLimits.holdPattern(c.principal.org, pattern)) {
      c.lim.hit('patterns');
      audit.record(c.principal.org, 'limit.hit', { limit: 'patterns', max: rateLimits.limitsOf(c.principal.org).patternsPerNode, transport: 'ws' }, { actor: c.principal.sub, session: c.session });
      throw new HubError('limit', 'the org holds too many distinct subscription patterns on this node');
    }
    if (withHistory) return subscribeHistory(ws, c, id, pattern, since);
    c.subs.push(pattern);
    if (fanout.update(ws, c)) await fanout.confirm();
    deps.presence?.subscribed(c.session, pattern);
    if (!c.closed) ws.cork(() => ok(ws, id));
  };

  /**
   * A device's command topic is served from the event store by the fleet delivery, never from the
   * bus: nothing a client or backend publishes on NATS can reach it.
   */
  const subscribeCommands = async (ws: WebSocket<Conn>, c: Conn, id: Id, pattern: string) => {
    const device = deviceOfCommandTopic(pattern);
    if (!device) throw new HubError('bad_topic', 'command topics are subscribed one device at a time: "$commands/<device>"');
    if (!deps.fleet) throw new HubError('unavailable', 'fleet commands are not enabled on this hub');
    const fleetMap = (c.fleet ??= new Map());
    fleetMap.set(pattern, null);
    let ready = false;
    const early: object[] = [];
    const detach = await deps.fleet.attach(c.principal.org, device, {
      session: c.session,
      transport: 'ws',
      // Deliveries read at subscribe time follow the ok, so the client sees ok first.
      send: (d) => {
        const frame = { op: 'msg', sub: pattern, topic: pattern, data: d, offset: d.offset, ts: Date.now() };
        if (!ready) early.push(frame);
        else if (!c.closed) ws.cork(() => send(ws, frame));
      },
    });
    if (c.closed || fleetMap.get(pattern) !== null) return detach();
    fleetMap.set(pattern, detach);
    ready = true;
    ws.cork(() => {
      ok(ws, id, { recovered: true });
      for (const f of early) send(ws, f);
    });
  };

  const unsubscribe = (ws: WebSocket<Conn>, c: Conn, pattern: string) => {
    if (c.fleet?.has(pattern)) {
      const detach = c.fleet.get(pattern);
      c.fleet.delete(pattern);
      return detach?.();
    }
    if (c.history?.has(pattern)) {
      const hs = c.history.get(pattern);
      c.history.delete(pattern);
      rateLimits.dropPattern(c.principal.org, pattern);
      hs?.close();
      deps.presence?.unsubscribed(c.session, pattern);
      return;
    }
    const i = c.subs.indexOf(pattern);
    if (i < 0) return;
    c.subs.splice(i, 1);
    fanout.update(ws, c);
    rateLimits.dropPattern(c.principal.org, pattern);
    deps.presence?.unsubscribed(c.session, pattern);
  };

  return { subscribe, unsubscribe };
}
