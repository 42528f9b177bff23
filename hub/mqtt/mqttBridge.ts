import type { Server } from 'node:net';
import { ConfigError } from '../errors.ts';
import { isExplicit } from '../config/config.ts';
import type { HubCore, HubExtension } from '../server.ts';
import { createClientIds, type BridgeContext } from './bridgeContext.ts';
import { Reason } from './codes.ts';
import { keepaliveExpired, type MqttLimits } from './limits.ts';
import { listenTcp, mountMqttWebSocket } from './mqttListeners.ts';
import { MqttFanout } from './mqttFanout.ts';
import type { MqttSession } from './mqttSession.ts';
import { FlushScheduler } from './outbound.ts';
import type { RetainedStore } from './retained.ts';
import { createRedisRetainedStore } from './retainedRedis.ts';

export interface MqttBridgeOptions {
  /** Replaces the Redis store (tests). */
  retained?: RetainedStore;
  /** Overrides `isExplicit('ORGHUB_MQTT_PORT')` (tests). */
  portExplicit?: boolean;
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
        maxQueued: Math.max(1000, config.ORGHUB_MQTT_MAX_INFLIGHT * 10),
        rate: config.ORGHUB_MQTT_RATE,
        maxSubscriptions: config.ORGHUB_MAX_SUBSCRIPTIONS,
        maxBackpressure: config.ORGHUB_MAX_BACKPRESSURE,
        connectTimeoutMs: 10_000,
      };
      const sessions = new Set<MqttSession>();
      const clientIds = createClientIds({ bus: core.bus, nodeId: core.nodeId, log });
      const ctx: BridgeContext = {
        verifier: core.verifier,
        roleGrants: core.roleGrants,
        bus: core.bus,
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
        live: core.sessions,
        takeOver: clientIds.takeOver,
        releaseClientId: clientIds.releaseClientId,
      };

      let server: Server;
      try {
        server = await listenTcp(ctx, config.ORGHUB_HOST, port);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const explicit = opts.portExplicit ?? isExplicit('ORGHUB_MQTT_PORT');
        await ctx.retained.close();
        clientIds.close();
        if (code === 'EADDRINUSE' && !explicit) {
          log.warn(`MQTT bridge off: port ${port} (the ORGHUB_MQTT_PORT default) is in use by another process; set ORGHUB_MQTT_PORT to a free port, or 0 to silence this`);
          return { stop: async () => {} };
        }
        throw new ConfigError(`cannot listen for MQTT on ${config.ORGHUB_HOST}:${port} (ORGHUB_MQTT_PORT): ${code ?? (err as Error).message}`, { cause: err });
      }
      mountMqttWebSocket(core.app, ctx);
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

      const fanout = ctx.fanout;
      return {
        checks: [{ name: 'redis', check: async () => ({ up: await ctx.retained.ping() }) }],
        metrics: [
          { name: 'orghub_mqtt_sessions', help: 'Open MQTT sessions (TCP and WebSocket)', type: 'gauge', read: () => sessions.size },
          { name: 'orghub_mqtt_fanout_patterns', help: 'Distinct (org, filter) bus subscriptions held for MQTT clients', type: 'gauge', read: () => fanout.size },
          { name: 'orghub_mqtt_fanout_messages_total', help: 'Messages received from the bus for MQTT fan-out', type: 'counter', read: () => fanout.stats.messages },
          { name: 'orghub_mqtt_deliveries_total', help: 'PUBLISH packets queued to MQTT clients', type: 'counter', read: () => fanout.stats.deliveries },
        ],
        async stop() {
          clearInterval(sweep);
          clientIds.close();
          server.close();
          for (const s of [...sessions]) s.disconnect(Reason.serverShuttingDown, 'server shutting down');
          await new Promise((r) => setTimeout(r, 50));
          await ctx.retained.close();
        },
      };
    },
  };
}
