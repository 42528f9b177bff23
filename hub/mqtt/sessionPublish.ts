import type { IPublishPacket, IPubrelPacket, Packet } from 'mqtt-packet';
import type { ContentType } from '../bus/bus.ts';
import { detectContentType } from '../bus/contentType.ts';
import type { PublishOptions } from '../core/publisher.ts';
import { HubError } from '../errors.ts';
import { Reason } from './codes.ts';
import { handleCommand, isCommandTopic } from './commandPublish.ts';
import { clip } from './limits.ts';
import type { Version } from './outbound.ts';
import type { RetainedMessage } from './retained.ts';
import { messageExpiresAt } from './sessionCodec.ts';
import { checkPublish } from './sessionLimits.ts';
import type { SessionPort } from './sessionPort.ts';

/**
 * PUBACK (QoS 1) or PUBREC (QoS 2) carrying `code`. MQTT 3.1.1 has no reason code, and MQTT 5
 * leaves out success (0x00), so only an MQTT 5 refusal or failure carries one.
 */
export function ackPacket(qos: 1 | 2, messageId: number | undefined, code: number, version: Version): Packet {
  const cmd = qos === 1 ? 'puback' : 'pubrec';
  return version === 5 && code !== 0 ? { cmd, messageId, reasonCode: code } : { cmd, messageId };
}

/**
 * Inbound PUBLISH (QoS 0, 1 or 2): `$cmd/` commands, then the hub's `Publisher` (topic grammar,
 * the reserved `$commands/...` and presence topics, publish grants and the `publish.denied` audit,
 * shared with WebSocket and HTTP; history topics appended before the publish), the retained
 * store and the bus. Returns a promise only when it waits (Redis, the event store), so that the
 * session can keep the hot path synchronous. This is where a PUBLISH is accepted: a per-message
 * hook (rate limit, quota) belongs right after the QoS 2 duplicate check.
 */
export function handlePublish(s: SessionPort, p: IPublishPacket): void | Promise<void> {
  const qos = p.qos;
  if (p.properties?.topicAlias !== undefined) return s.disconnect(Reason.topicAliasInvalid, 'topic aliases are not supported (Topic Alias Maximum is 0)');
  const payload = typeof p.payload === 'string' ? Buffer.from(p.payload) : p.payload;
  if (qos === 2) {
    // A resend before PUBREL is acknowledged again and not published again (also across a resumed session).
    if (s.qos2.has(p.messageId!)) return s.send({ cmd: 'pubrec', messageId: p.messageId });
    if (s.qos2.size >= s.ctx.limits.maxInflight) return s.disconnect(Reason.receiveMaximumExceeded, 'receive maximum exceeded');
  }
  if (isCommandTopic(p.topic)) {
    // Commands wait for their append anyway: first let the user and org command leases fill.
    return s.lim.settle('cmd').then(() => {
      const over = checkPublish(s, p, payload.length, true, () => handlePublish(s, p));
      if (over) return over.done;
      return handleCommand(s.ctx, s, p.topic, payload).then((code) => afterInbound(s, code, p));
    });
  }
  let topic: string;
  try {
    topic = s.ctx.publisher.check(s, p.topic, 'mqtt');
  } catch (err) {
    if (!(err instanceof HubError)) throw err;
    if (err.code === 'forbidden') return ack(s, Reason.notAuthorized, p);
    s.audit('session.protocol_violation', { reason: 'topic_invalid', topic: clip(p.topic) });
    return s.disconnect(Reason.topicNameInvalid, 'topic outside the hub grammar (segments of A-Z a-z 0-9 _ - ~ : = @)');
  }
  // Size and rate limits of the tier (hub/limits): MQTT 5 PUBACK/PUBREC 0x97, QoS 0 dropped and counted.
  const over = checkPublish(s, p, payload.length, false, () => handlePublish(s, p));
  if (over) return over.done;
  const contentType = detectContentType(payload);
  const opts: PublishOptions = { qos: qos === 0 ? 0 : 1, expiresAt: messageExpiresAt(p.properties?.messageExpiryInterval, Date.now()) };
  if (!p.retain) return afterBus(s, toBus(s, topic, payload, contentType, opts), p);
  const msg: RetainedMessage = { topic, payload: Buffer.from(payload), contentType, qos: qos === 0 ? 0 : 1, from: s.principal.sub, ts: Date.now() };
  return s.ctx.retained.set(s.principal.org, msg).then(
    (stored) => {
      if (stored) return afterBus(s, toBus(s, topic, payload, contentType, opts), p);
      // Over the org's retained-topic or retained-bytes cap: refused whole (not published), as MQTT 5 0x97 says.
      s.lim.hit('retained_bytes');
      s.audit('limit.hit', { limit: 'retained_topics', topic, transport: 'mqtt' });
      ack(s, Reason.quotaExceeded, p);
    },
    (err) => {
      s.log.warn({ err: (err as Error).message }, 'retained store unavailable');
      afterInbound(s, Reason.unspecified, p);
    },
  );
}

/**
 * PUBREL ends an inbound QoS 2 exchange: the id is free again, PUBCOMP answers. An id with no
 * exchange open gets PUBCOMP 0x92 in MQTT 5 (3.1.1 has no reason codes: a plain PUBCOMP, which is
 * also what a client resending PUBREL after a lost PUBCOMP needs).
 */
export function handlePubrel(s: SessionPort, p: IPubrelPacket): void {
  const known = s.qos2.delete(p.messageId ?? 0);
  if (!known && s.version === 5) s.send({ cmd: 'pubcomp', messageId: p.messageId, reasonCode: Reason.packetIdentifierNotFound });
  else s.send({ cmd: 'pubcomp', messageId: p.messageId });
}

/** `afterInbound` once the publish is done (a history topic waits for its append). */
function afterBus(s: SessionPort, code: number | Promise<number>, p: IPublishPacket): void | Promise<void> {
  return typeof code === 'number' ? afterInbound(s, code, p) : code.then((c) => afterInbound(s, c, p));
}

/**
 * Hands a checked PUBLISH to the bus through the Publisher; `unspecified` when the bus is down
 * (nothing was published). A topic of a namespace with history is appended to it first
 * (docs/history.md), so the answer then waits for the append.
 */
function toBus(s: SessionPort, topic: string, payload: Buffer, contentType: ContentType, opts: PublishOptions): number | Promise<number> {
  try {
    const r = s.ctx.publisher.send(s, topic, payload, contentType, opts);
    return r instanceof Promise ? r.then(() => Reason.success, unavailable) : Reason.success;
  } catch (err) {
    return unavailable(err);
  }
}

/**
 * The reason code of a publish the bus refused as `unavailable`; anything else is rethrown. (A
 * function, not a closure in `toBus`: under tsx every named closure costs a `name`
 * defineProperty each time it is created, here once per PUBLISH.)
 */
function unavailable(err: unknown): number {
  if (err instanceof HubError && err.code === 'unavailable') return Reason.unspecified;
  throw err;
}

/** Acks a PUBLISH with `code`; a QoS 2 id that was taken (code < 0x80) waits for PUBREL. */
function ack(s: SessionPort, code: number, p: IPublishPacket): void {
  if (p.qos === 0 || !s.open) return;
  if (p.qos === 2 && code < 0x80) s.qos2.add(p.messageId!);
  s.send(ackPacket(p.qos, p.messageId, code, s.version));
}

/**
 * Acks a handled PUBLISH. A failure the client should retry (`unspecified`: the bus or the store
 * is down, nothing was taken) closes a 3.1.1 connection without an ack, so the client resends
 * after reconnecting; MQTT 5 gets the reason code instead.
 */
function afterInbound(s: SessionPort, code: number, p: IPublishPacket): void {
  if (code === Reason.unspecified && s.version === 4) return s.dropForRetry('hub unavailable');
  ack(s, code, p);
}
