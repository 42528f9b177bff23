import type { RecordedEvent } from '../../hub/eventstore/eventStore.ts';
import { dataJson } from '../rawData.ts';
import { BadEventError, foldEach, isPlainObject, type Folded } from '../projection.ts';

/** Commands live in `commands:<topic>` streams (hub/commands/commandService.ts). */
export const COMMAND_STREAM_PREFIX = 'commands:';
/** The recorded command types (hub/commands/registry.ts). */
export const COMMAND_TYPES: ReadonlySet<string> = new Set(['device.reboot', 'device.config', 'fleet.ack']);

/**
 * Status of a command row. Generic recorded commands stay `issued`; fleet commands
 * (`fleetFold.ts`) start `queued` and only ever move forward (docs/fleet.md).
 */
export type CommandStatus = 'issued' | 'queued' | 'delivered' | 'succeeded' | 'failed' | 'rejected' | 'expired' | 'cancelled';

export interface CommandRow {
  org_id: string;
  id: string;
  device_id: string | null;
  topic: string;
  type: string;
  data: string;
  status: CommandStatus;
  issued_by: string;
  issued_at: string;
  updated_at: string;
  global_position: string;
  idempotency_key: string | null;
  /** Fleet commands only. */
  expires_at: string | null;
  fleet_id: string | null;
}

export function isCommandEvent(e: RecordedEvent): boolean {
  return e.stream.startsWith(COMMAND_STREAM_PREFIX) && COMMAND_TYPES.has(e.type);
}

/** `devices/<id>/…` names device `<id>`; any other topic targets no single device (NULL). */
export function deviceOfTopic(topic: string): string | null {
  const segs = topic.split('/');
  return segs[0] === 'devices' && segs.length >= 2 && segs[1] !== '' ? segs[1] : null;
}

export function commandRow(e: RecordedEvent): CommandRow {
  if (!isPlainObject(e.data)) throw new BadEventError('command data must be a JSON object');
  if (typeof e.metadata?.actor !== 'string') throw new BadEventError('metadata.actor must be a string');
  const topic = e.stream.slice(COMMAND_STREAM_PREFIX.length);
  if (topic === '') throw new BadEventError('command stream names no topic');
  return {
    org_id: e.org,
    id: e.id,
    device_id: deviceOfTopic(topic),
    topic,
    type: e.type,
    data: dataJson(e),
    status: 'issued',
    issued_by: e.metadata.actor,
    issued_at: e.recordedAt,
    updated_at: e.recordedAt,
    global_position: e.globalPosition.toString(),
    idempotency_key: e.metadata.idempotencyKey ?? null,
    expires_at: null,
    fleet_id: null,
  };
}

export function foldCommands(events: readonly RecordedEvent[]): Folded<CommandRow> {
  return foldEach(events, (e) => (isCommandEvent(e) ? commandRow(e) : undefined));
}
