import { parseTopic } from '../acl/topic.ts';
import type { Bus, ContentType } from '../bus/bus.ts';
import { HubError } from '../errors.ts';
import type { ClientContext } from './context.ts';

/**
 * The one publish path shared by WebSocket, HTTP and MQTT: validate the topic, check the
 * grant, hand the exact bytes to the bus. The org is always the principal's.
 */
export class Publisher {
  constructor(private readonly bus: Bus) {}

  /** Throws HubError: `bad_topic`, `forbidden`, or `unavailable` (nothing was published). */
  publish(ctx: ClientContext, topic: unknown, payload: Uint8Array, contentType: ContentType): void {
    const t = this.check(ctx, topic);
    this.bus.publish(ctx.principal.org, t, payload, { contentType, from: ctx.principal.sub });
  }

  /** Validates and authorises a topic without publishing; returns the topic string. */
  check(ctx: ClientContext, topic: unknown): string {
    parseTopic(topic);
    const t = topic as string;
    if (!ctx.grants.canPublish(t)) throw new HubError('forbidden', `publish to "${t}" is not granted`);
    return t;
  }

  get available(): boolean {
    return this.bus.connected;
  }
}

/** The bytes of a JSON frame's `data`: its JSON text. Binary values (msgpack) travel as-is. */
export function payloadOf(data: unknown): { payload: Uint8Array; contentType: ContentType } {
  if (data instanceof Uint8Array) return { payload: data, contentType: 'bytes' };
  let text: string;
  try {
    text = JSON.stringify(data);
  } catch (err) {
    // JSON.stringify recurses: a value nested ~5000 deep (a 10 KB frame) overflows the stack.
    if (err instanceof RangeError) throw new HubError('invalid', 'data is nested too deeply');
    throw err;
  }
  return { payload: Buffer.from(text), contentType: 'json' };
}
