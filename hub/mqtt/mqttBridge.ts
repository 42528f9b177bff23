import type { Server } from 'node:net';
import { ConfigError } from '../errors.ts';
import { isExplicit } from '../config/config.ts';
import type { HubCore, HubExtension } from '../server.ts';
import type { BridgeContext, BridgeHooks, SessionStats, SweptSession, HeldQueue } from './bridgeContext.ts';
import { Reason } from './codes.ts';
import { keepaliveExpired, type MqttLimits } from './limits.ts';
import { listenTcp, mountMqttWebSocket } from './mqttListeners.ts';
import { MqttFanout } from './mqttFanout.ts';
import { FlushScheduler } from './outbound.ts';
import type { RetainedStore } from './retained.ts';
import { createRedisRetainedStore } from './retainedRedis.ts';
import type { SessionStore } from './sessionStore.ts';
import { createRedisSessionStore } from './sessionStoreRedis.ts';
import { mountMqttSessionsApi } from './sessionsApi.ts';
import { createTakeoverRegistry } from './takeoverRegistry.ts';
import { DrainGate } from './drainGate.ts';
import { startOrphanAdoption } from './orphanAdoption.ts';

export interface MqttBridgeOptions {
  /** Replaces the Redis store (tests). */
  retained?: RetainedStore;
  /** Replaces the Redis session store (tests). */
  sessions?: SessionStore;
  /** Overrides `isExplicit('ORGHUB_MQTT_PORT')` (tests). */
  portExplicit?: boolean;
  /** Test seams awaited at fixed points of a session's life (tests). */
  hooks?: BridgeHooks;
}

function sum(queues: Set<HeldQueue>): number {
  let n = 0;
  for (const q of queues) n += q.length;
  return n;
}

/**
 * The MQTT bridge as a hub extension: TCP on ORGHUB_MQTT_PORT and MQTT over WebSocket at `/mqtt`,
 * both feeding the same sessions. ORGHUB_MQTT_PORT=0 turns the whole bridge off; a busy default
 * port does the same with one warning, a busy explicit port fails the start.
 */
export function createMqttBridge(opts: MqttBridgeOptions = {}): HubExtension {
  return {
    name: 'mqtt',
    async start(core: HubCore) {
      const { config, log } = core;
      const port = config.ORGHUB_MQTT_PORT;
      if (port === 0) {
        log.info('MQTT bridge off (ORGHUB_MQTT_PORT=0)');
        return { stop: async () => {} };
      }
      const limits: MqttLimits = {
        maxPacket: config.ORGHUB_MQTT_MAX_PACKET,
        maxInflight: config.ORGHUB_MQTT_MAX_INFLIGHT,
        // A resumed session's whole queue may wait behind the in-flight window.
        maxQueued: Math.max(1000, config.ORGHUB_MQTT_MAX_INFLIGHT * 10, config.ORGHUB_MQTT_QUEUE_MAX * 2),
        rate: config.ORGHUB_MQTT_RATE,
        maxSubscriptions: config.ORGHUB_MAX_SUBSCRIPTIONS,
        maxBackpressure: config.ORGHUB_MAX_BACKPRESSURE,
        connectTimeoutMs: 10_000,
      };
      const sessions = new Set<SweptSession>();
      const queues = new Set<HeldQueue>();
      const stats: SessionStats = { queued: 0, dropped: { overflow: 0, expired: 0, unavailable: 0 }, adopted: 0, retainedSent: 0, pauses: 0, holds: 0, inboundQueuedBytes: 0 };
      const takeover = createTakeoverRegistry({ bus: core.bus, nodeId: core.nodeId, log });
      const maxExpiryS = config.ORGHUB_MQTT_MAX_SESSION_EXPIRY;
      const ctx: BridgeContext = {
        nodeId: core.nodeId,
        verifier: core.verifier,
        roleGrants: core.roleGrants,
        bus: core.bus,
        publisher: core.publisher,
        audit: core.audit,
        commands: core.commands,
        fleet: core.fleet,
        presence: core.presence,
        history: core.history,
        retained: opts.retained ?? createRedisRetainedStore(config.REDIS_URL, log, config.ORGHUB_MQTT_MAX_RETAINED, (org) => (core.limits.enabled ? core.limits.limitsOf(org).retainedBytes : 0)),
        fanout: new MqttFanout(core.bus),
        flusher: new FlushScheduler(),
        log,
        limits,
        quotas: core.limits,
        sessions,
        takeover,
        store: opts.sessions ?? createRedisSessionStore(config.REDIS_URL, log, { maxExpiryMs: maxExpiryS * 1000 }),
        policy: { defaultExpiryS: config.ORGHUB_MQTT_SESSION_EXPIRY, maxExpiryS, maxQueue: config.ORGHUB_MQTT_QUEUE_MAX, maxSessions: config.ORGHUB_MQTT_MAX_SESSIONS },
        stats,
        queues,
        parkedHere: new Map(),
        live: core.sessions,
        drain: new DrainGate(),
        hooks: opts.hooks,
      };
      const gate = ctx.drain!;

      let server: Server;
      try {
        server = await listenTcp(ctx, config.ORGHUB_HOST, port);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const explicit = opts.portExplicit ?? isExplicit('ORGHUB_MQTT_PORT');
        await Promise.all([ctx.retained.close(), ctx.store.close()]);
        takeover.close();
        if (code === 'EADDRINUSE' && !explicit) {
          log.warn(`MQTT bridge off: port ${port} (the ORGHUB_MQTT_PORT default) is in use by another process; set ORGHUB_MQTT_PORT to a free port, or 0 to silence this`);
          return { stop: async () => {} };
        }
        throw new ConfigError(`cannot listen for MQTT on ${config.ORGHUB_HOST}:${port} (ORGHUB_MQTT_PORT): ${code ?? (err as Error).message}`, { cause: err });
      }
      mountMqttWebSocket(core.app, ctx);
      mountMqttSessionsApi(core.app, { verifier: core.verifier, store: ctx.store, audit: core.audit, log });
      log.info({ port, ws: '/mqtt' }, 'mqtt bridge listening');

      // Keepalive (1.5 × the client's interval, MQTT §3.1.2.10) and CONNECT timeout, one sweep per second.
      const sweep = setInterval(() => {
        const now = Date.now();
        for (const s of sessions) {
          if (s.state === 'open') {
            if (keepaliveExpired(s.keepaliveMs, s.lastSeen, now)) s.disconnect(Reason.keepAliveTimeout, 'keepalive timeout');
          } else if (s.state === 'connecting' && now - s.openedAt > limits.connectTimeoutMs) {
            s.disconnect(Reason.protocolError, 'no CONNECT in time');
          }
        }
      }, 1000);
      sweep.unref();
      const adoption = startOrphanAdoption(ctx, stats);

      const fanout = ctx.fanout;
      return {
        checks: [{ name: 'redis', check: async () => ({ up: (await ctx.retained.ping()) && (await ctx.store.ping()) }) }],
        metrics: [
          { name: 'orghub_mqtt_sessions', help: 'Open MQTT sessions (TCP and WebSocket)', type: 'gauge', read: () => sessions.size },
          { name: 'orghub_mqtt_fanout_patterns', help: 'Distinct (org, filter) bus subscriptions held for MQTT clients', type: 'gauge', read: () => fanout.size },
          { name: 'orghub_mqtt_fanout_messages_total', help: 'Messages received from the bus for MQTT fan-out', type: 'counter', read: () => fanout.stats.messages },
          { name: 'orghub_mqtt_deliveries_total', help: 'PUBLISH packets queued to MQTT clients', type: 'counter', read: () => fanout.stats.deliveries },
          { name: 'orghub_mqtt_offline_sessions', help: 'Parked persistent MQTT sessions whose offline queue this node keeps', type: 'gauge', read: () => queues.size },
          { name: 'orghub_mqtt_queued_messages', help: 'Messages waiting in the offline queues this node keeps (as of its last append to each)', type: 'gauge', read: () => sum(queues) },
          { name: 'orghub_mqtt_retained_sent_total', help: 'Retained messages queued to MQTT subscribers (a page at a time, paced by the socket)', type: 'counter', read: () => stats.retainedSent },
          { name: 'orghub_mqtt_rate_holds_total', help: 'Times an MQTT socket was not read for the retry time of a rate-limit refusal', type: 'counter', read: () => stats.holds },
          { name: 'orghub_mqtt_socket_pauses_total', help: 'Times an MQTT socket stopped being read because its packet queue held over 4 MiB', type: 'counter', read: () => stats.pauses },
          { name: 'orghub_mqtt_inbound_queued_bytes', help: 'Bytes of inbound PUBLISH packets queued behind a pending one, all MQTT connections', type: 'gauge', read: () => stats.inboundQueuedBytes },
          { name: 'orghub_mqtt_queued_total', help: 'Messages this node appended to offline MQTT session queues', type: 'counter', read: () => stats.queued },
          { name: 'orghub_mqtt_adopted_sessions_total', help: 'Parked MQTT sessions this node adopted from a node that stopped beating', type: 'counter', read: () => stats.adopted },
          {
            name: 'orghub_mqtt_queue_dropped_total',
            help: 'Messages of persistent MQTT sessions dropped: overflow (queue full, oldest dropped), expired (Message Expiry), unavailable (Redis failed)',
            type: 'counter',
            read: () => 0,
            labelled: { label: 'reason', values: ['overflow', 'expired', 'unavailable'], byLabel: () => ({ ...stats.dropped, expired: stats.dropped.expired + fanout.stats.expired }) },
          },
        ],
        /**
         * Graceful drain (docs/mqtt.md "Shutdown"): no new TCP connections (MQTT over WebSocket
         * stopped with the hub's listen socket) and no new commands; commands being appended get
         * their PUBACK (up to `waitMs`); then MQTT 5 clients get DISCONNECT 0x8B (Server shutting
         * down) and 3.1.1 clients a close, and persistent sessions are parked in Redis.
         */
        async drain(waitMs: number) {
          const deadline = Date.now() + waitMs;
          gate.close();
          server.close();
          const idle = await gate.idle(deadline);
          if (!idle) log.warn({ inflight: gate.inFlight }, 'mqtt drain: commands still in flight at the deadline');
          for (const s of [...sessions]) s.disconnect(Reason.serverShuttingDown, 'server shutting down');
          if (!(await gate.flushed(deadline))) log.warn('mqtt drain: parked sessions not all written at the deadline');
        },
        async stop() {
          clearInterval(sweep);
          await adoption.stop();
          takeover.close();
          gate.close();
          server.close();
          // Without a drain before (a failed start, tests): close what is left, then let parks reach Redis.
          for (const s of [...sessions]) s.disconnect(Reason.serverShuttingDown, 'server shutting down');
          await gate.flushed(Date.now() + 2000);
          await Promise.all([ctx.retained.close(), ctx.store.close()]);
        },
      };
    },
  };
}
