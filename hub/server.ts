import uws from '@trufflesuite/uws-js-unofficial';
import { hostname } from 'node:os';
import { parseRoleGrants, defaultRoleGrants } from './acl/roles.ts';
import type { RoleGrants } from './acl/grants.ts';
import type { AuditSink } from './audit/audit.ts';
import { createLogAuditSink } from './audit/logAuditSink.ts';
import { createJoseVerifier } from './auth/joseVerifier.ts';
import { createCachingVerifier } from './auth/cachingVerifier.ts';
import type { TokenVerifier } from './auth/principal.ts';
import { createNatsBus } from './bus/natsBus.ts';
import type { Config } from './config/config.ts';
import type { CommandHandler } from './core/commands.ts';
import { createStoreAuditSink } from './audit/storeAuditSink.ts';
import { CommandRegistry } from './commands/registry.ts';
import { createCommandService } from './commands/commandService.ts';
import type { EventStore, EventStoreStats } from './eventstore/eventStore.ts';
import { Publisher } from './core/publisher.ts';
import { mountOpsApi, opsSource, type ReadinessCheck } from './http/opsApi.ts';
import { startOpsListener, type OpsListener } from './ops/opsListener.ts';
import { redisReadiness } from './http/redisReadiness.ts';
import { mountHttpApi } from './http/publishApi.ts';
import { mountQueryApi } from './http/queryApi.ts';
import { recordRoutes, type MountedRoute } from './http/routes.ts';
import type { ReadModels } from './readmodels/readModels.ts';
import { cursorKey } from './readmodels/factory.ts';
import type { Logger } from './log.ts';
import { createMetrics, type MetricSource, type HistogramSource } from './metrics.ts';
import { createProjectionStatus } from '../projections/hubStatus.ts';
import { orgLabeler } from './core/latencyHistogram.ts';
import { WsFanout } from './transport/ws/fanout.ts';
import { mountWebSocket } from './transport/ws/wsTransport.ts';
import type { Bus } from './bus/bus.ts';
import { ConfigError } from './errors.ts';
import type { FleetDelivery, FleetService } from './fleet/fleet.ts';
import { createFleetService } from './fleet/fleetService.ts';
import { createFleetDelivery } from './fleet/delivery.ts';
import { mountFleetApi } from './http/fleetApi.ts';
import { mountPresenceApi } from './http/presenceApi.ts';
import { mountHistoryApi } from './http/historyApi.ts';
import { parseRetention } from './history/history.ts';
import { shareReads } from './history/sharedReads.ts';
import { createRedisOpenCommands } from './fleet/redisOpenCommands.ts';
import { createRedisExpirySchedule } from './fleet/redisExpirySchedule.ts';
import { createRedisHistory } from './history/redisHistory.ts';
import { createHistoryRecorder, type HistoryRecorder } from './history/subscription.ts';
import { parseNamespaces } from './presence/presence.ts';
import { createRedisPresence } from './presence/redisPresence.ts';
import { createPresenceTracker, type PresenceTracker } from './presence/tracker.ts';
import { createAggregatingAuditSink } from './audit/aggregatingAuditSink.ts';
import { createLimitService } from './limits/factory.ts';
import type { LimitService } from './limits/limitService.ts';
import { registerLimitMetrics } from './limits/metrics.ts';
import { clusterSecret, createAccess, type Access } from './access/access.ts';
import { withSignedControl } from './bus/signedControl.ts';
import { createHeaderAuth } from './bus/headerAuth.ts';
import type { SessionRegistry } from './core/sessions.ts';
import { mountRevocationApi } from './http/revocationApi.ts';
import { mountApiKeyApi } from './http/apiKeyApi.ts';
import { mountOrgApi } from './http/orgApi.ts';
import { mountPlatformKeyApi } from './http/platformKeyApi.ts';
import { createPlatformKeys } from './access/keyLifecycle.ts';

/** What the outside world may plug in: everything else is built from the config. */
export interface HubParts {
  /** The system of record. With it, audit events are appended to it and commands are enabled. */
  store?: EventStore;
  /** Extra readiness checks (event store, Redis, ...) reported by `/ready`. */
  checks?: ReadinessCheck[];
  /** Mounts further routes or listeners (the MQTT bridge) once the core exists. */
  extensions?: HubExtension[];
  /** The query side (docs/query-api.md); without it the query routes answer 503. Closed on stop. */
  readModels?: ReadModels;
}

export interface HubCore {
  app: uws.TemplatedApp;
  bus: Bus;
  verifier: TokenVerifier;
  roleGrants: RoleGrants;
  publisher: Publisher;
  audit: AuditSink;
  commands?: CommandHandler;
  /** Fleet commands (with an event store): the write side and this node's delivery. */
  fleet?: FleetDelivery;
  fleetService?: FleetService;
  /** History of the namespaces in ORGHUB_HISTORY_NAMESPACES (absent when none is). */
  history?: HistoryRecorder;
  /** Presence (absent with ORGHUB_PRESENCE=off). */
  presence?: PresenceTracker;
  /** Rate limits, caps and quotas, shared by every transport. */
  limits: LimitService;
  config: Config;
  log: Logger;
  nodeId: string;
  /** Live sessions of this node (WebSocket and MQTT register here). */
  sessions: SessionRegistry;
  access: Access;
}

export interface HubExtension {
  name: string;
  /**
   * `drain(waitMs)`, when given, runs at the start of a graceful stop beside the WebSocket drain:
   * stop accepting, let in-flight work finish (up to `waitMs`), tell clients to go. `stop` follows.
   */
  start(core: HubCore): Promise<{ checks?: ReadinessCheck[]; metrics?: MetricSource[]; drain?(waitMs: number): Promise<void>; stop(): Promise<void> }>;
}

export interface RunningHub {
  port: number;
  /** The ops listener's port (ORGHUB_OPS_PORT), when one runs. */
  opsPort?: number;
  core: HubCore;
  /** Every route mounted on the HTTP port, extensions included (checked against docs/openapi.yaml). */
  routes: readonly MountedRoute[];
  /** Graceful drain (docs/operations.md); `drainMs` bounds the wait for in-flight commands. */
  stop(drainMs?: number): Promise<void>;
}

/** Builds and starts one hub node. The HTTP listener is up before NATS is, so `/health` answers at once. */
export async function startHub(config: Config, log: Logger, parts: HubParts = {}): Promise<RunningHub> {
  const nodeId = config.ORGHUB_NODE_ID || `${hostname()}:${process.pid}`;
  const roleGrants = config.ORGHUB_ROLE_GRANTS ? parseRoleGrants(config.ORGHUB_ROLE_GRANTS) : defaultRoleGrants;
  const tokens = createCachingVerifier(await createJoseVerifier(config, { reloadOnSighup: true, onWarning: (m) => log.warn(m) }), {
    max: config.ORGHUB_JWT_CACHE_SIZE,
    ttlMs: 60_000,
  });
  // The declared command topics (`x-orghub-topics`) are reserved: Publisher refuses publishes there
  // and the bus drops unsigned messages there (docs/access.md "Command topics").
  const commandRegistry = new CommandRegistry();
  const isCommandTopic = (topic: string) => commandRegistry.topics.reserves(topic);
  const bus = withSignedControl(createNatsBus({ servers: config.NATS_URL, name: `orghub ${nodeId}`, log, headerAuth: createHeaderAuth(clusterSecret(config)), commandTopics: isCommandTopic }), clusterSecret(config), log);
  const access = createAccess({ config, bus, log, verifier: tokens });
  const { verifier, sessions } = access;
  const store = parts.store;
  // Denials and limit hits are aggregated per window, so a flood cannot become an audit flood.
  const audit = createAggregatingAuditSink(store ? createStoreAuditSink({ store, log, nodeId, maxBuffer: config.ORGHUB_AUDIT_BUFFER, maxPerOrg: config.ORGHUB_AUDIT_ORG_BUFFER }) : createLogAuditSink(log), { windowMs: config.ORGHUB_AUDIT_AGGREGATE_MS });
  const limits = createLimitService(config, log, nodeId, access.orgStore);
  // Each org's share of the group commit follows its tier (limits off: every org weighs the same).
  if (limits.enabled) store?.weighOrgs?.((org) => limits.limitsOf(org).commitWeight);
  access.orgs.onChange((org) => limits.forget(org));
  const delivery = store ? createFleetDelivery({ store, bus, audit, log, nodeId, retryMs: config.ORGHUB_FLEET_RETRY_MS }) : undefined;
  const fleetService = store
    ? createFleetService({
        store,
        registry: new CommandRegistry(new URL('../schemas/fleet/', import.meta.url)),
        bus,
        audit,
        log,
        nodeId,
        limits: {
          expirySeconds: config.ORGHUB_FLEET_EXPIRY_SECONDS,
          maxExpirySeconds: config.ORGHUB_FLEET_MAX_EXPIRY_SECONDS,
          maxPendingPerDevice: config.ORGHUB_FLEET_MAX_PENDING,
          maxBulk: config.ORGHUB_FLEET_MAX_BULK,
          maxOpenPerOrg: config.ORGHUB_FLEET_MAX_OPEN,
        },
        open: createRedisOpenCommands({ url: config.REDIS_URL, prefix: config.ORGHUB_FLEET_REDIS_PREFIX, log }),
        expiries: createRedisExpirySchedule({ url: config.REDIS_URL, prefix: config.ORGHUB_FLEET_REDIS_PREFIX, log }),
        changed: (org, device) => delivery!.notify(org, device),
      })
    : undefined;
  const commands = store ? createCommandService({ store, registry: commandRegistry, bus, audit, log, nodeId, fleet: fleetService }) : undefined;
  const { app, routes } = recordRoutes(uws.App());
  let retention;
  try {
    retention = parseRetention(config.ORGHUB_HISTORY_NAMESPACES);
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  const history = retention.size > 0 ? createHistoryRecorder({ store: shareReads(createRedisHistory({ url: config.REDIS_URL, prefix: config.ORGHUB_HISTORY_PREFIX, log, maxTopicsPerOrg: config.ORGHUB_HISTORY_MAX_TOPICS })), bus, namespaces: retention, log }) : undefined;
  const publisher = new Publisher(bus, audit, history, isCommandTopic);
  const fanout = new WsFanout(app, bus, orgLabeler(config.ORGHUB_METRICS_ORGS.split(',')));
  const presenceNamespaces = parseNamespaces(config.ORGHUB_PRESENCE_NAMESPACES);
  const presence =
    config.ORGHUB_PRESENCE === 'on'
      ? createPresenceTracker({
          store: createRedisPresence({ url: config.REDIS_URL, prefix: config.ORGHUB_PRESENCE_PREFIX, log }),
          bus,
          log,
          nodeId,
          namespaces: presenceNamespaces,
          cap: config.ORGHUB_PRESENCE_MAX_PER_TOPIC,
          heartbeatMs: config.ORGHUB_PRESENCE_HEARTBEAT_MS,
          ttlMs: config.ORGHUB_PRESENCE_TTL_MS,
          orgEvents: config.ORGHUB_PRESENCE_ORG_EVENTS === 'on',
          audit,
        })
      : undefined;
  const core: HubCore = { app, bus, verifier, roleGrants, publisher, audit, commands, limits, fleet: delivery, fleetService, presence, history, config, log, nodeId, sessions, access };

  const ws = mountWebSocket({
    app,
    verifier,
    roleGrants,
    publisher,
    fanout,
    audit,
    commands,
    fleet: delivery,
    presence,
    history,
    maxRecover: config.ORGHUB_HISTORY_MAX_RECOVER,
    log,
    rateLimits: limits,
    sessions,
    limits: {
      maxFrameBytes: config.ORGHUB_MAX_FRAME_BYTES,
      maxSubscriptions: config.ORGHUB_MAX_SUBSCRIPTIONS,
      idleTimeoutSeconds: config.ORGHUB_IDLE_TIMEOUT,
      maxBackpressure: config.ORGHUB_MAX_BACKPRESSURE,
      turnBudgetMs: config.ORGHUB_WS_TURN_BUDGET_MS,
      turnSliceMs: config.ORGHUB_WS_TURN_SLICE_MS,
      maxQueuedBytes: config.ORGHUB_WS_QUEUE_BYTES,
    },
  });
  mountHttpApi({ app, verifier, roleGrants, publisher, audit, commands, limits, log, maxBody: config.ORGHUB_HTTP_MAX_BODY, maxBatch: config.ORGHUB_HTTP_MAX_BATCH });
  mountQueryApi({ app, verifier, roleGrants, audit, readModels: parts.readModels, log, cursorKey: cursorKey(config), exportPageSize: config.ORGHUB_QUERY_EXPORT_PAGE, maxPerOrg: config.ORGHUB_QUERY_MAX_PER_ORG });
  mountHistoryApi({ app, history, maxRecover: config.ORGHUB_HISTORY_MAX_RECOVER, verifier, roleGrants, audit, log, maxBody: config.ORGHUB_HTTP_MAX_BODY });
  mountPresenceApi({ app, store: presence?.store, namespaces: presenceNamespaces, verifier, roleGrants, audit, log, maxBody: config.ORGHUB_HTTP_MAX_BODY });
  const readModels = parts.readModels;
  mountFleetApi({ app, verifier, roleGrants, audit, fleet: fleetService, log, maxBody: config.ORGHUB_HTTP_MAX_BODY, maxBulk: config.ORGHUB_FLEET_MAX_BULK, allDevices: readModels ? (org, max) => readModels.deviceIds(org, max) : undefined });
  mountRevocationApi({ app, verifier, audit, log, revocations: access.revocations, store, nodeId, maxTtlSec: config.ORGHUB_JWT_MAX_TTL });
  // The only routes that take platform API keys (docs/access.md "Platform API keys").
  mountOrgApi({ app, verifier: access.platformVerifier, audit, log, orgs: access.orgs, orgStore: access.orgStore, store, nodeId, eraseOrgData: (org) => access.eraseOrgData(org) });
  mountPlatformKeyApi({ app, verifier, audit, log, nodeId, platformKeys: createPlatformKeys({ apiKeys: access.apiKeys, revocations: access.revocations, maxTtlSec: config.ORGHUB_JWT_MAX_TTL, store }) });
  mountApiKeyApi({ app, verifier, audit, log, apiKeys: access.apiKeys, revocations: access.revocations, roleGrants, store, nodeId, maxTtlSec: config.ORGHUB_JWT_MAX_TTL });


  const stops: (() => Promise<void>)[] = [];
  const drains: ((waitMs: number) => Promise<void>)[] = [];
  const checks: ReadinessCheck[] = [
    { name: 'nats', check: async () => ({ up: bus.connected }) },
    { name: 'revocations', check: async () => ({ up: access.ready(), detail: { rules: access.revocations.size } }) },
    ...(parts.checks ?? []),
  ];
  // Informational: without Redis only history-topic publishes fail and presence pauses; the rest
  // of the hub serves on, so neither makes the node unready.
  if (history) checks.push({ name: 'history', check: async () => ({ up: true, detail: { redis: (await history.store.ping().catch(() => false)) ? 'up' : 'down' } }) });
  if (presence) checks.push({ name: 'presence', check: async () => ({ up: true, detail: { redis: (await presence.store.ping().catch(() => false)) ? 'up' : 'down' } }) });
  // The Postgres store pings on a connection of its own, never one that appends wait for.
  // Its backlog (appends queued or in flight) is reported; a full queue answers `overloaded`, not 503 here.
  if (store) checks.push({ name: 'eventstore', check: async () => (await (store.ping ? store.ping() : store.readStream('_health', 'ping', { maxCount: 1 })), { up: true, detail: store.stats ? { pending: store.stats().pending } : undefined }) });
  const metrics: (MetricSource | HistogramSource)[] = [
    fanoutLatencyMetric(fanout),
    { name: 'orghub_ws_frames_queued_total', help: 'WebSocket frames that waited in their connection\'s queue (past their org\'s share of a loop turn, or held) instead of running inline', type: 'counter', read: () => ws.inbound.queued },
    { name: 'orghub_ws_frames_waiting', help: 'WebSocket frames waiting in connection queues now', type: 'gauge', read: () => ws.inbound.waiting },
    { name: 'orghub_ws_rate_holds_total', help: 'Times a WebSocket connection\'s frames were held for the retry time of a rate-limit refusal', type: 'counter', read: () => ws.inbound.holds },
    { name: 'orghub_ws_queue_overflows_total', help: 'Times a WebSocket connection\'s queue passed ORGHUB_WS_QUEUE_BYTES (its frames then ran at once, or a held one was closed for abuse)', type: 'counter', read: () => ws.inbound.overflows },
    { name: 'orghub_bus_forged_commands_dropped_total', help: 'Messages from NATS on a command topic without a valid hub signature (a raw publish imitating a recorded command), dropped before delivery', type: 'counter', read: () => bus.forgedCommands },
  ];
  if (store?.stats) metrics.push(...eventStoreMetrics(store.stats.bind(store)));
  if (delivery) {
    metrics.push(
      { name: 'orghub_fleet_devices', help: 'Devices subscribed to their fleet command topic on this node', type: 'gauge', read: () => delivery.stats().devices },
      { name: 'orghub_fleet_deliveries_total', help: 'Fleet commands sent for the first time by this node', type: 'counter', read: () => delivery.stats().deliveries },
      { name: 'orghub_fleet_redeliveries_total', help: 'Fleet commands sent again (not acked within ORGHUB_FLEET_RETRY_MS, or a new subscription)', type: 'counter', read: () => delivery.stats().redeliveries },
    );
  }
  if (presence) {
    metrics.push(
      { name: 'orghub_presence_sessions', help: 'Connections this node tracks in presence', type: 'gauge', read: () => presence.stats().sessions },
      { name: 'orghub_presence_errors_total', help: 'Presence store calls that failed (presence is best effort)', type: 'counter', read: () => presence.stats().errors },
      { name: 'orghub_presence_events_lost_total', help: 'Join/leave events not published because the bus was down (the store stayed right)', type: 'counter', read: () => presence.stats().eventsLost },
    );
  }
  for (const ext of parts.extensions ?? []) {
    const started = await ext.start(core);
    checks.push(...(started.checks ?? []));
    metrics.push(...(started.metrics ?? []));
    stops.push(started.stop);
    if (started.drain) drains.push(started.drain);
  }
  checks.push({ name: 'audit', check: async () => ({ up: true, detail: { ...audit.stats() } }) });
  // Redis is named always (docs/operations.md "Health"); the MQTT bridge's check, when on, is the one.
  const redisCheck = checks.find((c) => c.name === 'redis');
  if (redisCheck) redisCheck.informational = true;
  else {
    const r = redisReadiness(config.REDIS_URL);
    checks.push(r.check);
    stops.push(r.close);
  }
  // Limits fail open to local buckets while Redis is down (docs/operations.md), so never "down" here.
  if (limits.enabled) checks.push({ name: 'limits', check: async () => ({ up: true, detail: { degraded: limits.degraded } }) });
  const registry = createMetrics({
    connections: ws.connections,
    fanout: () => fanout.stats,
    fanoutPatterns: () => fanout.size,
    auditBacklog: () => audit.stats().backlog,
    auditDropped: () => audit.stats().dropped,
    auditDroppedByOrg: () => audit.stats().droppedByOrg ?? {},
    auditDeadLettered: () => audit.stats().deadLettered ?? 0,
  }, metrics);
  if (store && config.ORGHUB_EVENT_STORE === 'postgres') {
    // The projector is its own process: its lag and dead letters are read from Postgres (docs/projections.md).
    const projections = createProjectionStatus({
      databaseUrl: config.DATABASE_URL,
      lagThresholdS: config.ORGHUB_PROJECTION_LAG_THRESHOLD_S,
      cacheMs: config.ORGHUB_PROJECTION_STATUS_CACHE_MS,
      onError: (err) => log.debug({ err: (err as Error)?.message }, 'projection status read failed'),
    });
    checks.push(projections.check);
    projections.register(registry);
    stops.push(projections.close);
  }
  registerLimitMetrics(registry, limits);
  const ops = opsSource(checks, registry, config.ORGHUB_READY_CACHE_MS);
  mountOpsApi(app, ops, log, !config.ORGHUB_OPS_PORT);
  // With ORGHUB_OPS_PORT the ops endpoints run on a thread of their own (docs/operations.md "Ops port").
  const opsListener: OpsListener | undefined = config.ORGHUB_OPS_PORT
    ? await startOpsListener({ host: config.ORGHUB_OPS_HOST, port: config.ORGHUB_OPS_PORT, readyCacheMs: config.ORGHUB_READY_CACHE_MS, metricsCacheMs: config.ORGHUB_OPS_METRICS_CACHE_MS, nice: config.ORGHUB_OPS_NICE, source: ops, log })
    : undefined;

  const listenSocket = await new Promise<uws.us_listen_socket>((resolve, reject) => {
    app.listen(config.ORGHUB_HOST, config.ORGHUB_PORT, (s) => (s ? resolve(s) : reject(new ConfigError(`cannot listen on ${config.ORGHUB_HOST}:${config.ORGHUB_PORT} (ORGHUB_PORT)`))));
  }).catch(async (err) => {
    await opsListener?.stop();
    throw err;
  });
  const port = uws.us_socket_local_port(listenSocket as unknown as uws.us_socket);
  log.info({ port, nodeId }, 'hub listening');

  return {
    port,
    opsPort: opsListener?.port,
    core,
    routes,
    async stop(drainMs = 0) {
      uws.us_listen_socket_close(listenSocket);
      // Probes on the ops port see the node go as soon as the tenants' port closes.
      await opsListener?.stop();
      // Half of the drain budget for in-flight commands (WebSocket and MQTT at once); the rest
      // flushes appends, parked MQTT sessions and the audit.
      await Promise.all([ws.stop(drainMs / 2), ...drains.map((d) => d(drainMs / 2).catch((err) => log.warn({ err }, 'extension drain failed')))]);
      delivery?.close();
      fleetService?.close();
      for (const s of stops.reverse()) await s().catch((err) => log.warn({ err }, 'extension stop failed'));
      await presence?.close();
      await history?.store.close();
      await audit.close();
      await limits.close();
      await access.stop();
      await bus.close();
      await store?.close();
      await parts.readModels?.close();
      verifier.close?.();
    },
  };
}

/** Publish-to-deliver latency of WebSocket fan-out, one series per bounded org label. */
function fanoutLatencyMetric(fanout: WsFanout): HistogramSource {
  return {
    name: 'orghub_deliver_latency_seconds',
    help: 'Seconds from the publishing node stamping Orghub-Ts to the hand-off of the frame to WebSocket subscribers (org label bounded by ORGHUB_METRICS_ORGS)',
    type: 'histogram',
    labelNames: ['org'],
    read: () => [...fanout.latency].map(([org, h]) => ({ labels: { org }, snapshot: h.snapshot() })),
  };
}

/** The event store's write path on /metrics. */
function eventStoreMetrics(stats: () => EventStoreStats): (MetricSource | HistogramSource)[] {
  const latency: HistogramSource = {
    name: 'orghub_eventstore_append_latency_seconds',
    help: 'Seconds from appendToStream to its commit (queue, group-commit window, transaction, fsync), successful appends only',
    type: 'histogram',
    labelNames: [],
    read: () => {
      const s = stats().appendLatency;
      return s ? [{ labels: {}, snapshot: s }] : [];
    },
  };
  return [
    latency,
    { name: 'orghub_eventstore_appends_total', help: 'Appends (commands and audit events) sent to the event store', type: 'counter', read: () => stats().appends },
    { name: 'orghub_eventstore_batches_total', help: 'Group-commit transactions (appends / batches = mean batch size)', type: 'counter', read: () => stats().batches },
    { name: 'orghub_eventstore_failed_batches_total', help: 'Group-commit transactions that failed as a whole', type: 'counter', read: () => stats().failedBatches },
    { name: 'orghub_eventstore_pending', help: 'Appends queued or in flight', type: 'gauge', read: () => stats().pending },
    { name: 'orghub_eventstore_overloaded_total', help: 'Appends refused with `overloaded` (group-commit queue or one org\'s share of it full)', type: 'counter', read: () => stats().overloaded ?? 0 },
    { name: 'orghub_eventstore_data_errors_total', help: 'Appends the database rejected for their data; each failed alone (its batch-mates were bisected out and committed)', type: 'counter', read: () => stats().dataErrors ?? 0 },
  ];
}
