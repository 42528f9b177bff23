import { parseTopic } from '../acl/topic.ts';
import type { AuditSink } from '../audit/audit.ts';
import type { Bus, ContentType } from '../bus/bus.ts';
import { HubError } from '../errors.ts';
import type { ClientContext, Transport } from './context.ts';
import { isReservedTopic } from '../fleet/fleet.ts';
import { isPresenceTopic } from '../presence/presence.ts';
import type { HistoryRecorder } from '../history/subscription.ts';

/** What a transport knows about a publish beyond its bytes (MQTT: QoS and Message Expiry). */
export interface PublishOptions {
  /** 0 for an MQTT publish at QoS 0 (delivered at most at QoS 0); absent means at least once. */
  qos?: 0 | 1;
  /** MQTT 5 Message Expiry as ms since the epoch; absent or 0 = never. */
  expiresAt?: number;
}

/**
 * The one publish path shared by WebSocket, HTTP and MQTT: validate the topic, check the grant (a
 * refusal is audited as `publish.denied`), hand the exact bytes to the bus. The org is always the
 * principal's.
 */
export class Publisher {
  constructor(
    private readonly bus: Bus,
    private readonly audit: AuditSink,
    /** Topics of a namespace with history are appended to it first (they get an offset); see docs/history.md. */
    private readonly history?: HistoryRecorder,
    /** The declared command topics (`x-orghub-topics`, hub/commands/commandTopics.ts): reserved for the command path. */
    private readonly commandTopics?: (topic: string) => boolean,
  ) {}

  /**
   * Whether only the hub publishes on `topic`, whatever the grants: fleet command topics
   * (`$commands/...`), presence topics, and every declared command topic (no publish may imitate
   * a recorded command; DESIGN.md). Subscribing there stays governed by the grants alone.
   */
  reserved(topic: string): boolean {
    return isReservedTopic(topic) || isPresenceTopic(topic) || (this.commandTopics?.(topic) ?? false);
  }

  /**
   * Throws HubError: `bad_topic`, `forbidden`, or `unavailable` (nothing was published). Returns a
   * promise only for a topic with history (the append is awaited before the publish).
   */
  publish(ctx: ClientContext, topic: unknown, payload: Uint8Array, contentType: ContentType, transport: Transport): void | Promise<void> {
    return this.send(ctx, this.check(ctx, topic, transport), payload, contentType);
  }

  /** Validates and authorises a topic without publishing; returns the topic string. */
  check(ctx: ClientContext, topic: unknown, transport: Transport): string {
    parseTopic(topic);
    const t = topic as string;
    // Command topics are reserved whatever the grants say: no publish may imitate a recorded command.
    if (this.reserved(t)) {
      this.audit.record(ctx.principal.org, 'publish.denied', { topic: t, transport, reason: 'reserved' }, { actor: ctx.principal.sub, session: ctx.session });
      throw new HubError('forbidden', `"${t}" is reserved: only the hub publishes there`);
    }
    if (!ctx.grants.canPublish(t)) {
      this.audit.record(ctx.principal.org, 'publish.denied', { topic: t, transport }, { actor: ctx.principal.sub, session: ctx.session });
      throw new HubError('forbidden', `publish to "${t}" is not granted`);
    }
    return t;
  }

  /** Publishes to a topic that `check` has already accepted. Throws `unavailable` when the bus is down. */
  send(ctx: ClientContext, checkedTopic: string, payload: Uint8Array, contentType: ContentType, opts?: PublishOptions): void | Promise<void> {
    const meta = { contentType, from: ctx.principal.sub, qos: opts?.qos, expiresAt: opts?.expiresAt };
    if (this.history?.retention(checkedTopic)) return this.history.publish(ctx.principal.org, checkedTopic, payload, meta);
    this.bus.publish(ctx.principal.org, checkedTopic, payload, meta);
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
