import { isPlainSegment } from '../acl/topic.ts';
import type { AuditSink } from '../audit/audit.ts';
import type { Bus } from '../bus/bus.ts';
import type { CommandRegistry } from '../commands/registry.ts';
import type { ClientContext } from '../core/context.ts';
import { HubError } from '../errors.ts';
import { ANY, type AppendResult, type EventStore, type NewEvent, type RecordedEvent } from '../eventstore/eventStore.ts';
import { uuidv7 } from '../eventstore/uuidv7.ts';
import type { Logger } from '../log.ts';
import { scopedKey } from '../commands/commandService.ts';
import { isDeepStrictEqual } from 'node:util';
import { bulkStream, deviceOfCommandTopic, deviceStream, EV, TERMINAL, type CommandState, type FleetService, type IssueRequest } from './fleet.ts';
import { foldCommands, pendingCommands } from './fold.ts';
import type { OpenCommands } from './openCommands.ts';
import type { ExpirySchedule } from './expirySchedule.ts';
import { createClusterBookkeeping } from './clusterBookkeeping.ts';

export interface FleetLimits {
  /** Default expiry, seconds. */
  expirySeconds: number;
  /** Longest `expiresIn` accepted, seconds. */
  maxExpirySeconds: number;
  /** Open (not terminal, not expired) commands per device; one more is refused with `limit`. */
  maxPendingPerDevice: number;
  /** Devices in one bulk command. */
  maxBulk: number;
  /** Open commands per org across the cluster (with `open`); past it a command is refused with `limit`. */
  maxOpenPerOrg: number;
}

export interface FleetServiceDeps {
  store: EventStore;
  registry: CommandRegistry;
  bus: Bus;
  audit: AuditSink;
  log: Logger;
  nodeId: string;
  limits: FleetLimits;
  /** The org-wide open-command slots (ORGHUB_FLEET_MAX_OPEN); absent = no org-wide bound. */
  open?: OpenCommands;
  /** The cluster-wide expiry schedule; absent = only the issuing node's timer expires commands. */
  expiries?: ExpirySchedule;
  /** How often this node looks for expiries that their issuing node missed (default 1000 ms). */
  expirySweepMs?: number;
  /** Told when a device's commands changed on this node (the delivery loop; other nodes hear it over the bus). */
  changed(org: string, deviceId: string): void;
}

/** Control channel on which nodes tell each other that a device's commands changed (a hint; the store is the truth). */
export const FLEET_CONTROL = 'fleet.notify';

/** The idempotency key every terminal event of a command carries: the store lets exactly one of them in. */
const finalKey = (commandId: string) => `fleet-final:${commandId}`;

/** Reads a whole stream, page by page. */
export async function readWholeStream(store: EventStore, org: string, stream: string): Promise<RecordedEvent[]> {
  const out: RecordedEvent[] = [];
  for (;;) {
    const page = await store.readStream(org, stream, { from: out.length, maxCount: 1000 });
    out.push(...page);
    if (page.length < 1000) return out;
  }
}

/**
 * The write side of fleet commands. Every step is an event in the device's stream (appended
 * before the caller is answered) and an audit event; then the nodes holding the device are told.
 */
export function createFleetService(deps: FleetServiceDeps): FleetService & { close(): void } {
  const { store, registry, bus, audit, log, nodeId, limits } = deps;
  const timers = new Set<NodeJS.Timeout>();

  const tell = (org: string, deviceId: string) => {
    deps.changed(org, deviceId);
    try {
      bus.publishControl(FLEET_CONTROL, Buffer.from(JSON.stringify({ org, device: deviceId, node: nodeId })));
    } catch {
      // Other nodes pick the change up at their next retry tick, which re-reads the store.
    }
  };

  const append = async (org: string, stream: string, events: NewEvent[]): Promise<AppendResult> => {
    try {
      return await store.appendToStream(org, stream, events, { expectedVersion: ANY });
    } catch (err) {
      if (err instanceof HubError) throw err;
      log.error({ err }, 'fleet append failed');
      throw new HubError('unavailable', 'event store unavailable; nothing was recorded');
    }
  };

  const read = async (org: string, deviceId: string): Promise<Map<string, CommandState>> => {
    try {
      return foldCommands(await readWholeStream(store, org, deviceStream(deviceId)));
    } catch (err) {
      log.error({ err }, 'fleet read failed');
      throw new HubError('unavailable', 'event store unavailable');
    }
  };

  const checkDevice = (deviceId: string) => {
    if (!isPlainSegment(deviceId)) throw new HubError('invalid', 'device id must be 1-64 characters of A-Z a-z 0-9 _ - ~ : = @');
  };

  /** Who may issue: a `cmd` grant for `fleet.<type>` on `devices/<id>/commands` (admins have `*` on `#`). */
  const authorize = (ctx: ClientContext, action: string, deviceId: string) => {
    const topic = `devices/${deviceId}/commands`;
    if (ctx.grants.canCommand(`fleet.${action}`, topic)) return;
    audit.record(ctx.principal.org, 'command.denied', { type: `fleet.${action}`, topic, transport: 'http' }, { actor: ctx.principal.sub, session: ctx.session });
    throw new HubError('forbidden', `fleet.${action} on device "${deviceId}" is not granted`);
  };

  const validate = (req: IssueRequest): number => {
    if (!registry.has(req.type)) throw new HubError('unknown_command', `unknown fleet command type "${req.type}" (wipe, lock, unlock, reboot, config)`);
    const problem = registry.check(req.type, req.data);
    if (problem) throw new HubError('invalid', `${req.type}: ${problem}`);
    const expiresIn = req.expiresIn ?? limits.expirySeconds;
    if (!Number.isInteger(expiresIn) || expiresIn < 1 || expiresIn > limits.maxExpirySeconds) throw new HubError('invalid', `expiresIn must be an integer from 1 to ${limits.maxExpirySeconds} seconds`);
    return expiresIn;
  };

  const checkRoom = (states: Map<string, CommandState>, deviceId: string) => {
    if (pendingCommands(states.values(), Date.now()).length >= limits.maxPendingPerDevice) {
      throw new HubError('limit', `device "${deviceId}" already has ${limits.maxPendingPerDevice} open commands (ORGHUB_FLEET_MAX_PENDING)`);
    }
  };

  /** Appends `expired` when the time comes, if nothing else ended the command first. */
  const scheduleExpiry = (org: string, deviceId: string, commandId: string, at: number) => {
    const t = setTimeout(() => {
      timers.delete(t);
      void expire(org, deviceId, commandId)
        .then((done) => done && unschedule({ org, deviceId, commandId }))
        .catch((err) => log.warn({ err: (err as Error).message, commandId }, 'fleet expiry not recorded; retried by the sweep and on next delivery'));
    }, Math.max(0, at - Date.now()) + 50);
    t.unref();
    timers.add(t);
  };

  /** Records `expired` if it is due; true once nothing is left to do for the command. */
  const expire = async (org: string, deviceId: string, commandId: string): Promise<boolean> => {
    const s = (await read(org, deviceId)).get(commandId);
    // Unknown here: scheduled by a node on another event store sharing the Redis prefix (one prefix per cluster).
    if (!s) log.warn({ org, commandId }, 'fleet expiry for a command this event store does not hold; dropped (ORGHUB_FLEET_REDIS_PREFIX shared by two clusters?)');
    if (!s || TERMINAL.has(s.status)) return true;
    if (s.expiresAt > Date.now()) return false;
    await recordExpired(deps, org, s);
    tell(org, deviceId);
    return true;
  };
  const { admit, release, schedule, unschedule, ...bookkeeping } = createClusterBookkeeping({
    open: deps.open,
    expiries: deps.expiries,
    log,
    maxOpenPerOrg: limits.maxOpenPerOrg,
    sweepMs: deps.expirySweepMs,
    expire: (c) => expire(c.org, c.deviceId, c.commandId),
  });

  const issuedEvent = (ctx: ClientContext, commandId: string, deviceId: string, req: IssueRequest, expiresAt: number, fleetId: string | undefined, key: string | undefined): NewEvent => ({
    id: commandId,
    type: EV.issued,
    data: { commandId, deviceId, type: req.type, data: req.data, expiresAt: new Date(expiresAt).toISOString(), ...(fleetId ? { fleetId } : {}) },
    metadata: { actor: ctx.principal.sub, session: ctx.session, node: nodeId, correlationId: fleetId ?? commandId, idempotencyKey: key },
  });

  /** The answer to a retry: the original command, unless the key was used for another request. */
  const duplicateOf = (s: CommandState | undefined, req: IssueRequest) => {
    // As for `cmd` keys (commandService.ts): a retry must repeat its request, or it is `conflict`.
    if (!s || s.type !== req.type || !isDeepStrictEqual(s.data, req.data)) throw new HubError('conflict', 'this idempotency key was used for another device or request');
    return { commandId: s.commandId, status: s.status, expiresAt: new Date(s.expiresAt).toISOString(), duplicate: true };
  };

  return {
    async issue(ctx, deviceId, req) {
      checkDevice(deviceId);
      authorize(ctx, req.type, deviceId);
      const expiresIn = validate(req);
      const org = ctx.principal.org;
      const key = req.key ? `fleet-issue:${scopedKey(ctx.principal.sub, req.key)}` : undefined;
      const states = await read(org, deviceId);
      // A retry of a command already recorded answers the original before any bound is checked:
      // the original holds its own slot, so the device's and the org's bounds must not refuse it.
      const recorded = key ? [...states.values()].find((s) => s.issueKey === key) : undefined;
      if (recorded) return duplicateOf(recorded, req);
      checkRoom(states, deviceId);
      const commandId = uuidv7();
      const expiresAt = Date.now() + expiresIn * 1000;
      await admit(org, [commandId], expiresAt);
      let r: AppendResult;
      try {
        r = await append(org, deviceStream(deviceId), [issuedEvent(ctx, commandId, deviceId, req, expiresAt, undefined, key)]);
      } catch (err) {
        release(org, [commandId]);
        throw err;
      }
      if (r.duplicate) {
        // Recorded meanwhile (a concurrent retry), or for another device (then `conflict`).
        release(org, [commandId]); // the original holds its own slot
        return duplicateOf((await read(org, deviceId)).get(r.ids[0]), req);
      }
      audit.record(org, 'fleet.issued', { commandId, deviceId, type: req.type, expiresAt: new Date(expiresAt).toISOString() }, { actor: ctx.principal.sub, session: ctx.session });
      schedule([{ org, deviceId, commandId }], expiresAt);
      scheduleExpiry(org, deviceId, commandId, expiresAt);
      tell(org, deviceId);
      return { commandId, status: 'queued', expiresAt: new Date(expiresAt).toISOString() };
    },

    async issueBulk(ctx, deviceIds, req) {
      if (deviceIds.length === 0) throw new HubError('invalid', 'the selector names no device');
      if (deviceIds.length > limits.maxBulk) throw new HubError('limit', `at most ${limits.maxBulk} devices per bulk command (ORGHUB_FLEET_MAX_BULK)`);
      if (new Set(deviceIds).size !== deviceIds.length) throw new HubError('invalid', 'device ids must be unique');
      for (const d of deviceIds) checkDevice(d);
      for (const d of deviceIds) authorize(ctx, req.type, d);
      const expiresIn = validate(req);
      const org = ctx.principal.org;
      let fleetId = uuidv7();
      const expiresAt = Date.now() + expiresIn * 1000;
      let planned = deviceIds.map((deviceId) => ({ deviceId, commandId: uuidv7() }));
      const admitted = planned.map((p) => p.commandId);
      await admit(org, admitted, expiresAt);
      // The bulk event comes first and names every command, so a retry with the same key finishes
      // a bulk cut short (each device's append has its own key and appends at most once).
      const bulk = await append(org, bulkStream(fleetId), [
        {
          id: fleetId,
          type: EV.bulkIssued,
          data: { fleetId, type: req.type, data: req.data, expiresAt: new Date(expiresAt).toISOString(), commands: planned },
          metadata: { actor: ctx.principal.sub, session: ctx.session, node: nodeId, correlationId: fleetId, idempotencyKey: req.key ? `fleet-bulk:${scopedKey(ctx.principal.sub, req.key)}` : undefined },
        },
      ]).catch((err) => {
        release(org, admitted);
        throw err;
      });
      let duplicate = false;
      let payload = req;
      let expiry = expiresAt;
      if (bulk.duplicate) {
        duplicate = true;
        fleetId = bulk.ids[0];
        const original = (await store.readStream(org, bulkStream(fleetId), { maxCount: 1 }))[0]?.data as { type: string; data: unknown; expiresAt: string; commands: typeof planned } | undefined;
        if (!original || original.type !== req.type || !isDeepStrictEqual(original.data, req.data)) throw new HubError('conflict', 'this idempotency key was used for another request');
        release(org, admitted); // the original's commands hold their own slots
        planned = original.commands;
        payload = { type: original.type, data: original.data };
        expiry = Date.parse(original.expiresAt);
      } else {
        try {
          const states = await Promise.all(deviceIds.map((d) => read(org, d)));
          states.forEach((s, i) => checkRoom(s, deviceIds[i]));
        } catch (err) {
          release(org, admitted);
          throw err;
        }
      }
      await Promise.all(
        planned.map(async ({ deviceId, commandId }) => {
          const r = await append(org, deviceStream(deviceId), [issuedEvent(ctx, commandId, deviceId, payload, expiry, fleetId, `fleet-bulk:${fleetId}:${deviceId}`)]);
          if (r.duplicate) return;
          scheduleExpiry(org, deviceId, commandId, expiry);
          tell(org, deviceId);
        }),
      );
      schedule(planned.map(({ deviceId, commandId }) => ({ org, deviceId, commandId })), expiry);
      if (!duplicate) audit.record(org, 'fleet.issued', { fleetId, type: req.type, devices: deviceIds.length, expiresAt: new Date(expiry).toISOString() }, { actor: ctx.principal.sub, session: ctx.session });
      return duplicate ? { fleetId, commands: planned, duplicate } : { fleetId, commands: planned };
    },

    async cancel(ctx, deviceId, commandId) {
      checkDevice(deviceId);
      authorize(ctx, 'cancel', deviceId);
      const org = ctx.principal.org;
      const s = (await read(org, deviceId)).get(commandId);
      if (!s) throw new HubError('not_found', `no command ${commandId} for device "${deviceId}"`);
      if (TERMINAL.has(s.status)) throw new HubError('conflict', `command ${commandId} is already ${s.status}`);
      const r = await append(org, deviceStream(deviceId), [
        { type: EV.cancelled, data: { commandId, deviceId }, metadata: { actor: ctx.principal.sub, session: ctx.session, node: nodeId, correlationId: s.fleetId ?? commandId, idempotencyKey: finalKey(commandId) } },
      ]);
      if (r.duplicate) {
        const now = (await read(org, deviceId)).get(commandId)!;
        throw new HubError('conflict', `command ${commandId} is already ${now.status}`);
      }
      audit.record(org, 'fleet.cancelled', { commandId, deviceId }, { actor: ctx.principal.sub, session: ctx.session });
      release(org, [commandId]);
      unschedule({ org, deviceId, commandId });
      tell(org, deviceId);
      return { commandId, status: 'cancelled' };
    },

    async ack(ctx, topic, data, transport) {
      const org = ctx.principal.org;
      const deviceId = deviceOfCommandTopic(topic) ?? /^devices\/([^/]+)\//.exec(topic)?.[1];
      if (!deviceId) throw new HubError('invalid', 'fleet.ack goes on the device\'s command topic "$commands/<device>"');
      const refuse = (code: 'not_found' | 'conflict', message: string, status?: string) => {
        audit.record(org, 'fleet.ack_refused', { commandId: data.commandId, deviceId, reason: code, status, transport }, { actor: ctx.principal.sub, session: ctx.session });
        return new HubError(code, message);
      };
      // A command of another device is not in this device's stream: refused as unknown (never revealed).
      const s = (await read(org, deviceId)).get(data.commandId);
      if (!s) throw refuse('not_found', `no command ${data.commandId} for device "${deviceId}"`);
      const duplicateOf = async (): Promise<{ eventId: string; position: string; duplicate: true }> => {
        const events = await readWholeStream(store, org, deviceStream(deviceId));
        const e = events.find((x) => x.type === EV.acked && (x.data as { commandId: string }).commandId === data.commandId);
        if (!e) {
          const st = foldCommands(events).get(data.commandId)!.status;
          throw refuse('conflict', `command ${data.commandId} is already ${st}`, st);
        }
        return { eventId: e.id, position: String(e.globalPosition), duplicate: true };
      };
      if (TERMINAL.has(s.status)) return duplicateOf();
      const r = await append(org, deviceStream(deviceId), [
        {
          type: EV.acked,
          data: { commandId: data.commandId, deviceId, status: data.status, ...(data.details !== undefined ? { details: data.details } : {}), transport },
          metadata: { actor: ctx.principal.sub, session: ctx.session, node: nodeId, correlationId: s.fleetId ?? s.commandId, idempotencyKey: finalKey(data.commandId) },
        },
      ]);
      if (r.duplicate) return duplicateOf();
      audit.record(org, 'fleet.acked', { commandId: data.commandId, deviceId, status: data.status, transport }, { actor: ctx.principal.sub, session: ctx.session });
      release(org, [data.commandId]);
      unschedule({ org, deviceId, commandId: data.commandId });
      tell(org, deviceId);
      return { eventId: r.ids[0], position: String(r.positions[0]) };
    },

    async list(org, deviceId) {
      checkDevice(deviceId);
      return [...(await read(org, deviceId)).values()];
    },

    close() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      bookkeeping.close();
    },
  };
}

/** Appends `expired` for a command past its expiry (at most one terminal event per command). */
export async function recordExpired(deps: Pick<FleetServiceDeps, 'store' | 'audit' | 'nodeId'>, org: string, s: CommandState): Promise<void> {
  const r = await deps.store.appendToStream(
    org,
    deviceStream(s.deviceId),
    [{ type: EV.expired, data: { commandId: s.commandId, deviceId: s.deviceId, expiresAt: new Date(s.expiresAt).toISOString() }, metadata: { actor: 'hub', node: deps.nodeId, correlationId: s.fleetId ?? s.commandId, idempotencyKey: finalKey(s.commandId) } }],
    { expectedVersion: ANY },
  );
  if (!r.duplicate) deps.audit.record(org, 'fleet.expired', { commandId: s.commandId, deviceId: s.deviceId }, { actor: 'hub' });
}

/** Appends `delivered` once per command (the first delivery on any node). */
export async function recordDelivered(deps: Pick<FleetServiceDeps, 'store' | 'audit' | 'nodeId'>, org: string, s: CommandState, session: string, transport: string): Promise<void> {
  const r = await deps.store.appendToStream(
    org,
    deviceStream(s.deviceId),
    [{ type: EV.delivered, data: { commandId: s.commandId, deviceId: s.deviceId, transport, session }, metadata: { actor: 'hub', session, node: deps.nodeId, correlationId: s.fleetId ?? s.commandId, idempotencyKey: `fleet-delivered:${s.commandId}` } }],
    { expectedVersion: ANY },
  );
  if (!r.duplicate) deps.audit.record(org, 'fleet.delivered', { commandId: s.commandId, deviceId: s.deviceId, transport }, { actor: 'hub', session });
}
