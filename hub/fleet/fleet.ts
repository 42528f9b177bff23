/**
 * Fleet commands (docs/fleet.md): an org admin issues wipe | lock | unlock | reboot | config to one
 * device or many; the hub delivers each at least once on the device's command topic
 * `$commands/<device>` until the device acks it, it expires or it is cancelled. The lifecycle
 * follows AWS IoT Jobs: queued → delivered → succeeded | failed | rejected, or expired, cancelled.
 *
 * The event store is the source of truth for delivery: a device's commands are the events of its
 * stream `fleet:<device>` (see `deviceStream`), folded by `fold.ts`. The read model
 * `device_commands` is for queries only; it lags, so delivery never reads it.
 */
import type { ClientContext, Transport } from '../core/context.ts';
import type { CommandResult } from '../core/commands.ts';

export const FLEET_TYPES = ['wipe', 'lock', 'unlock', 'reboot', 'config'] as const;
export type FleetType = (typeof FLEET_TYPES)[number];

export type AckStatus = 'succeeded' | 'failed' | 'rejected';
export type CommandStatus = 'queued' | 'delivered' | AckStatus | 'expired' | 'cancelled';
export const TERMINAL: ReadonlySet<CommandStatus> = new Set(['succeeded', 'failed', 'rejected', 'expired', 'cancelled']);

/** Event types of a device's fleet stream. */
export const EV = {
  issued: 'fleet.command.issued',
  delivered: 'fleet.command.delivered',
  acked: 'fleet.command.acked',
  expired: 'fleet.command.expired',
  cancelled: 'fleet.command.cancelled',
  bulkIssued: 'fleet.bulk.issued',
} as const;

/** The first segment of every command topic. `$`-topics are never matched by `#` or `+`. */
export const COMMAND_TOPIC_ROOT = '$commands';

/** The stream holding one device's fleet commands and every step of their lifecycle. */
export function deviceStream(deviceId: string): string {
  return `fleet:${deviceId}`;
}

/** The stream of one bulk (fleet-wide) command: its selector and the commands it created. */
export function bulkStream(fleetId: string): string {
  return `fleet-bulk:${fleetId}`;
}

/** The delivery topic of a device (org-relative). */
export function commandTopic(deviceId: string): string {
  return `${COMMAND_TOPIC_ROOT}/${deviceId}`;
}

/** True for any topic or pattern under `$commands`: reserved, only the hub publishes there. */
export function isReservedTopic(topic: string): boolean {
  return topic === COMMAND_TOPIC_ROOT || topic.startsWith(`${COMMAND_TOPIC_ROOT}/`);
}

/** The device a command topic names (`$commands/<device>` exactly), else undefined. */
export function deviceOfCommandTopic(topic: string): string | undefined {
  if (!isReservedTopic(topic)) return undefined;
  const rest = topic.slice(COMMAND_TOPIC_ROOT.length + 1);
  return rest.length > 0 && !rest.includes('/') && rest !== '+' && rest !== '#' ? rest : undefined;
}

/** One command as folded from its device's stream. Times are ms since the epoch. */
export interface CommandState {
  commandId: string;
  deviceId: string;
  type: FleetType;
  data: unknown;
  status: CommandStatus;
  issuedBy: string;
  issuedAt: number;
  expiresAt: number;
  fleetId?: string;
  /** The idempotency key its `issued` event was recorded with (a keyed single-device issue: `fleet-issue:...`). */
  issueKey?: string;
  /** Stream position of the `issued` event: the command topic's offset. */
  offset: number;
  /** Present once acked. */
  details?: string;
}

/** What the device receives on `$commands/<device>` (the same JSON over WebSocket and MQTT). */
export interface CommandDelivery {
  commandId: string;
  type: FleetType;
  data: unknown;
  issuedAt: string;
  expiresAt: string;
  /** 1 for the first delivery on this node, then 2, 3, ... for redeliveries. */
  attempt: number;
  offset: number;
}

/**
 * A local subscriber of a command topic: one WebSocket connection or MQTT session. `send` must
 * not throw; a closed sink simply drops.
 */
export interface CommandSink {
  readonly session: string;
  readonly transport: Transport;
  send(d: CommandDelivery): void;
}

export interface IssueRequest {
  type: string;
  data: unknown;
  /** Seconds until expiry; default ORGHUB_FLEET_EXPIRY_SECONDS. */
  expiresIn?: number;
  /** Idempotency key: a retry with the same key returns the original commandId. */
  key?: string;
}

export interface IssueResult {
  commandId: string;
  status: CommandStatus;
  expiresAt: string;
  duplicate?: boolean;
}

export interface BulkResult {
  fleetId: string;
  commands: { deviceId: string; commandId: string }[];
  duplicate?: boolean;
}

/** The write side of fleet commands, shared by HTTP, WebSocket and MQTT. Throws HubError. */
export interface FleetService {
  issue(ctx: ClientContext, deviceId: string, req: IssueRequest): Promise<IssueResult>;
  issueBulk(ctx: ClientContext, deviceIds: string[], req: IssueRequest): Promise<BulkResult>;
  cancel(ctx: ClientContext, deviceId: string, commandId: string): Promise<{ commandId: string; status: CommandStatus }>;
  /** A device's `fleet.ack` on `topic` (its own command topic). */
  ack(ctx: ClientContext, topic: string, data: { commandId: string; status: AckStatus; details?: string }, transport: Transport): Promise<CommandResult>;
  /** Authoritative state of one device's commands, from the event store. */
  list(org: string, deviceId: string): Promise<CommandState[]>;
}

/** Delivery to the devices connected to this node. */
export interface FleetDelivery {
  /** Starts delivering `deviceId`'s pending commands to `sink`; resolves once the first read is done. Returns the detacher. */
  attach(org: string, deviceId: string, sink: CommandSink): Promise<() => void>;
  /** Something changed for the device (issued, acked, cancelled): re-read and deliver what is new. */
  notify(org: string, deviceId: string): void;
  stats(): { devices: number; deliveries: number; redeliveries: number };
  close(): void;
}
