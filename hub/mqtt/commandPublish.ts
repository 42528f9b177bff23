import { isValidTopic } from '../acl/topic.ts';
import { HubError } from '../errors.ts';
import type { ClientContext } from '../core/context.ts';
import type { BridgeContext } from './bridgeContext.ts';
import { COMMAND_PREFIX, Reason } from './codes.ts';

const utf8 = new TextDecoder('utf-8', { fatal: true });

export function isCommandTopic(topic: string): boolean {
  return topic.startsWith(COMMAND_PREFIX);
}

/** The topic a `$cmd/<topic>` PUBLISH commands; undefined when it is not a command or `<topic>` breaks the grammar. */
export function commandTopicOf(rawTopic: string): string | undefined {
  if (!isCommandTopic(rawTopic)) return undefined;
  const topic = rawTopic.slice(COMMAND_PREFIX.length);
  return isValidTopic(topic) ? topic : undefined;
}

/** MQTT 5 reason code for a command the CommandHandler refused with HubError `code` (docs/mqtt.md "Commands over MQTT"). */
export function commandErrorReason(code: string): number {
  switch (code) {
    case 'forbidden':
      return Reason.notAuthorized;
    case 'unavailable':
      return Reason.unspecified;
    case 'bad_topic':
      return Reason.topicNameInvalid;
    case 'invalid':
    case 'unknown_command':
      return Reason.payloadFormatInvalid;
    default:
      return Reason.implementationSpecific;
  }
}

/**
 * A PUBLISH on `$cmd/<topic>` with a JSON body `{"type", "data", "key"?}` is a recorded command:
 * the CommandHandler appends it to the event store before this resolves, so the PUBACK that
 * follows means "durably recorded". Resolves to the MQTT 5 reason code for the ack.
 */
export async function handleCommand(ctx: BridgeContext, client: ClientContext, rawTopic: string, payload: Uint8Array): Promise<number> {
  const topic = commandTopicOf(rawTopic);
  if (topic === undefined) return Reason.topicNameInvalid;
  let body: { type?: unknown; data?: unknown; key?: unknown };
  try {
    body = JSON.parse(utf8.decode(payload));
  } catch {
    return Reason.payloadFormatInvalid;
  }
  if (body === null || typeof body !== 'object' || typeof body.type !== 'string' || (body.key !== undefined && typeof body.key !== 'string')) {
    return Reason.payloadFormatInvalid;
  }
  if (!ctx.commands) return Reason.implementationSpecific;
  // A draining node takes no new command: `unavailable`, which the client retries on another node.
  if (ctx.drain?.draining) return commandErrorReason('unavailable');
  try {
    const done = ctx.commands.execute(client, { type: body.type, topic, data: body.data, key: body.key as string | undefined }, 'mqtt');
    await (ctx.drain ? ctx.drain.track(done) : done);
    return Reason.success;
  } catch (err) {
    if (!(err instanceof HubError)) throw err;
    return commandErrorReason(err.code);
  }
}
