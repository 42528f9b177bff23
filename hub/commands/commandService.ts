import { isDeepStrictEqual } from 'node:util';
import { parseTopic } from '../acl/topic.ts';
import type { AuditSink } from '../audit/audit.ts';
import type { Bus } from '../bus/bus.ts';
import type { CommandHandler, CommandRequest, CommandResult } from '../core/commands.ts';
import type { ClientContext } from '../core/context.ts';
import { HubError } from '../errors.ts';
import { badString, findBadText } from '../core/text.ts';
import { ANY, type EventStore } from '../eventstore/eventStore.ts';
import type { Logger } from '../log.ts';
import type { CommandRegistry } from './registry.ts';
import { isReservedTopic, type FleetService } from '../fleet/fleet.ts';

/** The stream a command is recorded in: one per target topic, so a device's commands read in order. */
export function commandStream(topic: string): string {
  return `commands:${topic}`;
}

/**
 * The idempotency key as stored: scoped to the actor (length-prefixed, so no sub/key pair can spell
 * another). The store's uniqueness is per org, so without the scope one actor's key would swallow
 * another actor's command and hand back its event id.
 */
export function scopedKey(actor: string, key: string): string {
  return `${actor.length}:${actor}:${key}`;
}

/**
 * Records a command in the event store, and only then acknowledges and publishes it. A retry with
 * the same `key` returns the original answer and appends nothing (unique per org in the store).
 */
export function createCommandService(deps: {
  store: EventStore;
  registry: CommandRegistry;
  bus: Bus;
  audit: AuditSink;
  log: Logger;
  nodeId: string;
  /** Handles `fleet.ack` (the ack changes a fleet command's state; it is not a command of its own). */
  fleet?: Pick<FleetService, 'ack'>;
}): CommandHandler {
  const { store, registry, bus, audit, log, nodeId } = deps;
  return {
    async execute(ctx: ClientContext, req: CommandRequest, transport): Promise<CommandResult> {
      const { principal } = ctx;
      if (!registry.has(req.type)) throw new HubError('unknown_command', `unknown command type "${req.type}"`);
      parseTopic(req.topic);
      if (!ctx.grants.canCommand(req.type, req.topic)) {
        audit.record(principal.org, 'command.denied', { type: req.type, topic: req.topic, transport }, { actor: principal.sub, session: ctx.session });
        throw new HubError('forbidden', `command "${req.type}" on "${req.topic}" is not granted`);
      }
      // Hostile text is refused before the schema and before the queue, so it fails this command alone.
      const bad = findBadText(req.data, undefined, 'data') ?? (typeof req.key === 'string' ? keyProblem(req.key) : undefined);
      if (bad) throw new HubError('invalid', `${req.type}: ${bad}`);
      const problem = registry.check(req.type, req.data);
      if (problem) throw new HubError('invalid', `${req.type}: ${problem}`);
      if (req.type === 'fleet.ack' && deps.fleet) return deps.fleet.ack(ctx, req.topic, req.data as Parameters<FleetService['ack']>[2], transport);
      // Command topics carry only fleet commands, published by the hub (DESIGN.md).
      if (isReservedTopic(req.topic)) {
        audit.record(principal.org, 'command.denied', { type: req.type, topic: req.topic, transport, reason: 'reserved' }, { actor: principal.sub, session: ctx.session });
        throw new HubError('forbidden', `"${req.topic}" is a command topic: only fleet.ack may be sent there`);
      }
      // A type is delivered only on the topics its schema declares (`x-orghub-topics`): that set is
      // what Publisher and the bus reserve, so a command elsewhere would be indistinguishable from a publish.
      if (!registry.topics.allows(req.type, req.topic)) {
        const declared = registry.topics.of(req.type);
        throw new HubError('bad_topic', declared.length > 0 ? `${req.type} is delivered on ${declared.map((p) => `"${p}"`).join(', ')}; "${req.topic}" matches none` : `${req.type} declares no delivery topic (x-orghub-topics)`);
      }

      let result;
      try {
        result = await store.appendToStream(
          principal.org,
          commandStream(req.topic),
          [{ type: req.type, data: req.data, metadata: { actor: principal.sub, session: ctx.session, node: nodeId, correlationId: ctx.correlationId ?? ctx.session, idempotencyKey: req.key === undefined ? undefined : scopedKey(principal.sub, req.key) } }],
          { expectedVersion: ANY },
        );
      } catch (err) {
        if (err instanceof HubError) throw err;
        log.error({ err }, 'command append failed');
        throw new HubError('unavailable', 'event store unavailable; the command was not recorded');
      }
      const eventId = result.ids[0];
      const position = String(result.positions[0]);
      if (result.duplicate) await sameRequest(store, principal.org, req, eventId, result.nextExpectedVersion);
      if (!result.duplicate) {
        const payload = Buffer.from(JSON.stringify({ commandId: eventId, type: req.type, data: req.data, issuedBy: principal.sub, position }));
        try {
          // `command: true` signs the payload too: other nodes drop unsigned messages on command topics.
          bus.publish(principal.org, req.topic, payload, { contentType: 'json', from: principal.sub, command: true });
        } catch (err) {
          // Recorded is what was promised; devices that missed the live copy read it from the log.
          log.warn({ err: (err as Error).message, eventId }, 'command recorded but not published live');
        }
      }
      return result.duplicate ? { eventId, position, duplicate: true } : { eventId, position };
    },
  };
}

function keyProblem(key: string): string | undefined {
  const why = badString(key, 256);
  return why && `key ${why}`;
}

/**
 * A retry must repeat the request it retries: the original is read back (it sits at the returned
 * stream position of the request's own topic stream) and compared by id, type and data. Anything
 * else is `conflict`, and the answer says nothing of the original (no id, no position).
 */
async function sameRequest(store: EventStore, org: string, req: CommandRequest, eventId: string | undefined, streamPosition: bigint): Promise<void> {
  let original;
  try {
    [original] = await store.readStream(org, commandStream(req.topic), { from: streamPosition, maxCount: 1 });
  } catch (err) {
    throw new HubError('unavailable', 'event store unavailable; the command was not recorded', { cause: err });
  }
  if (!original || original.id !== eventId || original.type !== req.type || !isDeepStrictEqual(original.data, req.data)) {
    throw new HubError('conflict', 'idempotency key already used for a different request');
  }
}
