/**
 * Pure folding of a device's fleet stream into command states, and the delivery decisions taken
 * from them. No I/O: the service and the delivery loop feed it events read from the store.
 */
import { EV, TERMINAL, type AckStatus, type CommandDelivery, type CommandState, type FleetType } from './fleet.ts';

/** The part of a recorded event the fold reads. */
export interface FoldEvent {
  type: string;
  data: unknown;
  streamPosition: bigint | number;
  recordedAt: string;
  metadata: { actor: string; idempotencyKey?: string };
}

interface IssuedData {
  commandId: string;
  deviceId: string;
  type: FleetType;
  data: unknown;
  expiresAt: string;
  fleetId?: string;
}

/**
 * Folds events in stream order. The first terminal event of a command wins (the store makes it
 * the only one: terminal appends share the idempotency key `fleet-final:<id>`); a `delivered`
 * after a terminal state changes nothing.
 */
export function foldCommands(events: readonly FoldEvent[], into = new Map<string, CommandState>()): Map<string, CommandState> {
  for (const e of events) {
    const d = e.data as Record<string, unknown>;
    const id = typeof d?.commandId === 'string' ? d.commandId : undefined;
    if (!id) continue;
    if (e.type === EV.issued) {
      const i = d as unknown as IssuedData;
      if (into.has(id)) continue;
      into.set(id, {
        commandId: id,
        deviceId: i.deviceId,
        type: i.type,
        data: i.data,
        status: 'queued',
        issuedBy: e.metadata.actor,
        issuedAt: Date.parse(e.recordedAt),
        expiresAt: Date.parse(i.expiresAt),
        fleetId: i.fleetId,
        ...(e.metadata.idempotencyKey ? { issueKey: e.metadata.idempotencyKey } : {}),
        offset: Number(e.streamPosition),
      });
      continue;
    }
    const s = into.get(id);
    if (!s || TERMINAL.has(s.status)) continue;
    switch (e.type) {
      case EV.delivered:
        s.status = 'delivered';
        break;
      case EV.acked:
        s.status = d.status as AckStatus;
        if (typeof d.details === 'string') s.details = d.details;
        break;
      case EV.expired:
        s.status = 'expired';
        break;
      case EV.cancelled:
        s.status = 'cancelled';
        break;
    }
  }
  return into;
}

/** Commands still to be delivered at `now`: not terminal and not past expiry, oldest first. */
export function pendingCommands(states: Iterable<CommandState>, now: number): CommandState[] {
  const out: CommandState[] = [];
  for (const s of states) if (!TERMINAL.has(s.status) && s.expiresAt > now) out.push(s);
  return out.sort((a, b) => a.offset - b.offset);
}

/** Commands whose expiry has passed but that carry no terminal event yet: `expired` is due. */
export function overdueCommands(states: Iterable<CommandState>, now: number): CommandState[] {
  const out: CommandState[] = [];
  for (const s of states) if (!TERMINAL.has(s.status) && s.expiresAt <= now) out.push(s);
  return out;
}

/** The status a reader should see at `now`: a command past expiry is expired even before the event lands. */
export function effectiveStatus(s: CommandState, now: number): CommandState['status'] {
  return !TERMINAL.has(s.status) && s.expiresAt <= now ? 'expired' : s.status;
}

/** The message sent on the command topic. */
export function toDelivery(s: CommandState, attempt: number): CommandDelivery {
  return {
    commandId: s.commandId,
    type: s.type,
    data: s.data,
    issuedAt: new Date(s.issuedAt).toISOString(),
    expiresAt: new Date(s.expiresAt).toISOString(),
    attempt,
    offset: s.offset,
  };
}

/** Per-status counts of a set of commands (for a bulk command's summary). */
export function statusSummary(states: Iterable<CommandState>, now: number): Record<string, number> {
  const out: Record<string, number> = { queued: 0, delivered: 0, succeeded: 0, failed: 0, rejected: 0, expired: 0, cancelled: 0 };
  for (const s of states) out[effectiveStatus(s, now)]++;
  return out;
}

/**
 * Redelivery schedule of one device on one node: `lastSent[commandId]` is when it was last sent.
 * Returns the commands due again at `now` (sent at least `retryMs` ago) among `pending`.
 */
export function dueForRetry(pending: readonly CommandState[], lastSent: ReadonlyMap<string, number>, now: number, retryMs: number): CommandState[] {
  return pending.filter((s) => {
    const t = lastSent.get(s.commandId);
    return t === undefined || now - t >= retryMs;
  });
}
