import type { RecordedEvent } from '../../hub/eventstore/eventStore.ts';
import { EV } from '../../hub/fleet/fleet.ts';
import { BadEventError, isPlainObject, type Rejected } from '../projection.ts';
import type { CommandRow } from './commandsFold.ts';

/** Fleet commands live in `fleet:<device>` streams (hub/fleet). */
export const FLEET_STREAM_PREFIX = 'fleet:';
const FLEET_TYPES: ReadonlySet<string> = new Set([EV.issued, EV.delivered, EV.acked, EV.expired, EV.cancelled]);
const ACK_STATUSES: ReadonlySet<string> = new Set(['succeeded', 'failed', 'rejected']);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isFleetEvent(e: RecordedEvent): boolean {
  return e.stream.startsWith(FLEET_STREAM_PREFIX) && FLEET_TYPES.has(e.type);
}

/** A forward move of one command: `delivered` applies to queued rows only, terminal ones to queued or delivered. */
export interface StatusMove {
  org_id: string;
  id: string;
  status: 'delivered' | 'succeeded' | 'failed' | 'rejected' | 'expired' | 'cancelled';
  at: string;
  details: string | null;
}

export interface FleetFolded {
  rows: CommandRow[];
  delivered: StatusMove[];
  terminal: StatusMove[];
  rejected: Rejected[];
}

const str = (d: Record<string, unknown>, k: string): string => {
  const v = d[k];
  if (typeof v !== 'string' || v === '') throw new BadEventError(`data.${k} must be a non-empty string`);
  return v;
};

/**
 * Folds fleet events into new rows (`issued`) and status moves. Applying all rows, then all
 * `delivered` moves, then all terminal moves gives the same table as applying the events one by
 * one: a command has at most one terminal event (the store lets one in), `delivered` only moves a
 * queued row, and a terminal move wins over `delivered` whichever came first.
 */
export function foldFleet(events: readonly RecordedEvent[]): FleetFolded {
  const out: FleetFolded = { rows: [], delivered: [], terminal: [], rejected: [] };
  for (const e of events) {
    if (!isFleetEvent(e)) continue;
    try {
      if (!isPlainObject(e.data)) throw new BadEventError('fleet event data must be a JSON object');
      const d = e.data;
      const id = str(d, 'commandId');
      if (!UUID.test(id)) throw new BadEventError('data.commandId must be a UUID');
      if (e.type === EV.issued) {
        const deviceId = str(d, 'deviceId');
        const expiresAt = str(d, 'expiresAt');
        if (Number.isNaN(Date.parse(expiresAt))) throw new BadEventError('data.expiresAt must be a timestamp');
        const fleetId = d.fleetId === undefined ? null : str(d, 'fleetId');
        if (fleetId !== null && !UUID.test(fleetId)) throw new BadEventError('data.fleetId must be a UUID');
        if (typeof e.metadata?.actor !== 'string') throw new BadEventError('metadata.actor must be a string');
        out.rows.push({
          org_id: e.org,
          id,
          device_id: deviceId,
          topic: `$commands/${deviceId}`,
          type: str(d, 'type'),
          data: JSON.stringify(d.data ?? null),
          status: 'queued',
          issued_by: e.metadata.actor,
          issued_at: e.recordedAt,
          updated_at: e.recordedAt,
          global_position: e.globalPosition.toString(),
          idempotency_key: e.metadata.idempotencyKey ?? null,
          expires_at: expiresAt,
          fleet_id: fleetId,
        });
      } else if (e.type === EV.delivered) {
        out.delivered.push({ org_id: e.org, id, status: 'delivered', at: e.recordedAt, details: null });
      } else {
        let status: StatusMove['status'] = e.type === EV.expired ? 'expired' : 'cancelled';
        let details: string | null = null;
        if (e.type === EV.acked) {
          const s = str(d, 'status');
          if (!ACK_STATUSES.has(s)) throw new BadEventError('data.status must be succeeded, failed or rejected');
          status = s as StatusMove['status'];
          details = typeof d.details === 'string' ? d.details : null;
        }
        out.terminal.push({ org_id: e.org, id, status, at: e.recordedAt, details });
      }
    } catch (err) {
      out.rejected.push({ event: e, error: (err as Error)?.message ?? String(err) });
    }
  }
  return out;
}
