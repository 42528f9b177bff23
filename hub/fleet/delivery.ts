import type { AuditSink } from '../audit/audit.ts';
import type { Bus } from '../bus/bus.ts';
import type { EventStore } from '../eventstore/eventStore.ts';
import type { Logger } from '../log.ts';
import { deviceStream, type CommandSink, type CommandState, type FleetDelivery } from './fleet.ts';
import { FLEET_CONTROL, readWholeStream, recordDelivered, recordExpired } from './fleetService.ts';
import { dueForRetry, foldCommands, overdueCommands, pendingCommands, toDelivery } from './fold.ts';

export interface FleetDeliveryDeps {
  store: EventStore;
  bus: Bus;
  audit: AuditSink;
  log: Logger;
  nodeId: string;
  /** Resend a command not acked after this long, ms (ORGHUB_FLEET_RETRY_MS). */
  retryMs: number;
}

/** One device with at least one subscriber on this node. */
interface Device {
  readonly org: string;
  readonly id: string;
  readonly sinks: Set<CommandSink>;
  /** commandId → when it was last sent (to every sink), ms; and how many times. */
  readonly lastSent: Map<string, number>;
  readonly attempts: Map<string, number>;
  /** A read of the store in progress; changes arriving meanwhile set `again`. */
  busy: boolean;
  again: boolean;
  /** The last read failed: the sweep retries it. */
  stale: boolean;
}

/**
 * Delivers fleet commands to the devices connected to this node, at least once: when the device
 * subscribes to `$commands/<device>`, when a command is issued (told by the service or, from
 * another node, over the bus control channel), and again every `retryMs` while it is neither acked,
 * cancelled nor expired. Each of those reads the device's stream from the event store: the
 * command state is never taken from the bus or the read model. Client publishes never reach a
 * command topic (they are reserved), so a device sees only what the hub recorded.
 */
export function createFleetDelivery(deps: FleetDeliveryDeps): FleetDelivery {
  const { store, log, retryMs } = deps;
  const devices = new Map<string, Device>();
  const counters = { deliveries: 0, redeliveries: 0 };
  const keyOf = (org: string, id: string) => `${org}\u0000${id}`;

  /** Reads the stream; expires what is overdue; returns the pending commands. */
  const readPending = async (d: Device): Promise<CommandState[]> => {
    const states = foldCommands(await readWholeStream(store, d.org, deviceStream(d.id)));
    const now = Date.now();
    for (const s of overdueCommands(states.values(), now)) {
      await recordExpired(deps, d.org, s).catch((err) => log.warn({ err: (err as Error).message }, 'fleet expiry not recorded'));
    }
    return pendingCommands(states.values(), now);
  };

  /** Sends what is due to every sink: new commands, and those unacked for `retryMs`. */
  const sync = async (d: Device): Promise<void> => {
    if (d.busy) {
      d.again = true;
      return;
    }
    d.busy = true;
    try {
      do {
        d.again = false;
        d.stale = false;
        const pending = await readPending(d);
        const open = new Set(pending.map((s) => s.commandId));
        for (const id of d.lastSent.keys()) if (!open.has(id)) (d.lastSent.delete(id), d.attempts.delete(id));
        for (const s of dueForRetry(pending, d.lastSent, Date.now(), retryMs)) send(d, s, [...d.sinks]);
      } while (d.again && d.sinks.size > 0);
    } catch (err) {
      d.stale = true;
      throw err;
    } finally {
      d.busy = false;
    }
  };

  const send = (d: Device, s: CommandState, sinks: CommandSink[]) => {
    if (sinks.length === 0) return;
    const attempt = (d.attempts.get(s.commandId) ?? 0) + 1;
    d.attempts.set(s.commandId, attempt);
    d.lastSent.set(s.commandId, Date.now());
    const msg = toDelivery(s, attempt);
    for (const sink of sinks) sink.send(msg);
    if (attempt === 1) counters.deliveries++;
    else counters.redeliveries++;
    if (s.status === 'queued') {
      s.status = 'delivered';
      void recordDelivered(deps, d.org, s, sinks[0].session, sinks[0].transport).catch((err) => log.warn({ err: (err as Error).message, commandId: s.commandId }, 'fleet delivery not recorded'));
    }
  };

  const kick = (d: Device) => {
    void sync(d).catch((err) => log.warn({ err: (err as Error).message, device: d.id }, 'fleet delivery read failed; retried on the next tick'));
  };

  // One sweep per node; a device is re-read only when something of it is due.
  const tickMs = Math.max(50, Math.min(1000, Math.floor(retryMs / 4)));
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const d of devices.values()) {
      if (d.stale) {
        kick(d);
        continue;
      }
      for (const t of d.lastSent.values()) {
        if (now - t >= retryMs) {
          kick(d);
          break;
        }
      }
    }
  }, tickMs);
  sweep.unref();

  const unsubscribe = deps.bus.subscribeControl(FLEET_CONTROL, (payload) => {
    let n: { org?: unknown; device?: unknown; node?: unknown };
    try {
      n = JSON.parse(Buffer.from(payload).toString('utf8'));
    } catch {
      return;
    }
    // This node's own changes were applied directly (see `notify`).
    if (n.node === deps.nodeId || typeof n.org !== 'string' || typeof n.device !== 'string') return;
    const d = devices.get(keyOf(n.org, n.device));
    if (d) kick(d);
  });

  return {
    async attach(org, deviceId, sink) {
      const key = keyOf(org, deviceId);
      let d = devices.get(key);
      if (!d) devices.set(key, (d = { org, id: deviceId, sinks: new Set(), lastSent: new Map(), attempts: new Map(), busy: false, again: false, stale: false }));
      d.sinks.add(sink);
      const device = d;
      const detach = () => {
        device.sinks.delete(sink);
        if (device.sinks.size === 0 && devices.get(key) === device) devices.delete(key);
      };
      try {
        // Everything still pending goes to the new subscriber at once, whatever other sinks got.
        for (const s of await readPending(device)) if (device.sinks.has(sink)) send(device, s, [sink]);
      } catch (err) {
        device.stale = true;
        log.warn({ err: (err as Error).message, device: deviceId }, 'fleet: pending commands not read at subscribe; retried on notify');
      }
      return detach;
    },
    notify(org, deviceId) {
      const d = devices.get(keyOf(org, deviceId));
      if (d) kick(d);
    },
    stats: () => ({ devices: devices.size, ...counters }),
    close() {
      clearInterval(sweep);
      unsubscribe();
      devices.clear();
    },
  };
}
