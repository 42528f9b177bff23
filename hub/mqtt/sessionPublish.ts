import { isReservedTopic } from '../fleet/fleet.ts';
import { isPresenceTopic } from '../presence/presence.ts';
import type { IPublishPacket, IPubrelPacket, Packet } from 'mqtt-packet';
import { isValidTopic } from '../acl/topic.ts';
import type { ContentType } from '../bus/bus.ts';
import { HubError } from '../errors.ts';
import { Reason } from './codes.ts';
import { detectContentType } from '../bus/contentType.ts';
import { handleCommand, isCommandTopic } from './inbound.ts';
import { clip } from './limits.ts';
import type { MqttSession } from './mqttSession.ts';
import type { Version } from './outbound.ts';
import type { RetainedMessage } from './retained.ts';
import { checkPublish } from './sessionLimits.ts';

/**
 * PUBACK (QoS 1) or PUBREC (QoS 2) carrying `code`. MQTT 3.1.1 has no reason code, and MQTT 5
 * leaves out success (0x00), so only an MQTT 5 refusal or failure carries one.
 */
export function ackPacket(qos: 1 | 2, messageId: number | undefined, code: number, version: Version): Packet {
  const cmd = qos === 1 ? 'puback' : 'pubrec';
  return version === 5 && code !== 0 ? { cmd, messageId, reasonCode: code } : { cmd, messageId };
}

/**
 * Inbound PUBLISH (QoS 0, 1 or 2): `$cmd/` commands, the topic grammar, the publish grants, the
 * retained store and then the bus. Returns a promise only when it waits (Redis, the event store),
 * so that the session can keep the hot path synchronous.
 */
export function handlePublish(s: MqttSession, p: IPublishPacket): void | Promise<void> {
  const qos = p.qos;
  if (p.properties?.topicAlias !== undefined) return s.disconnect(Reason.topicAliasInvalid, 'topic aliases are not supported (Topic Alias Maximum is 0)');
  const payload = typeof p.payload === 'string' ? Buffer.from(p.payload) : p.payload;
  if (qos === 2) {
    // A resend before PUBREL is acknowledged again and not published again.
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
  if (!isValidTopic(p.topic)) {
    s.audit('session.protocol_violation', { reason: 'topic_invalid', topic: clip(p.topic) });
    return s.disconnect(Reason.topicNameInvalid, 'topic outside the hub grammar (segments of A-Z a-z 0-9 _ - ~ : = @)');
  }
  // Command topics are reserved whatever the grants say: only the hub publishes fleet commands.
  if (isReservedTopic(p.topic) || isPresenceTopic(p.topic)) {
    s.audit('publish.denied', { topic: p.topic, transport: 'mqtt', reason: 'reserved' });
    return ack(s, Reason.notAuthorized, p);
  }
  if (!s.grants.canPublish(p.topic)) {
    s.audit('publish.denied', { topic: p.topic, transport: 'mqtt' });
    return ack(s, Reason.notAuthorized, p);
  }
  const over = checkPublish(s, p, payload.length, false, () => handlePublish(s, p));
  if (over) return over.done;
  const contentType = detectContentType(payload);
  if (!p.retain) return afterBus(s, toBus(s, p.topic, payload, contentType, qos), p);
  const msg: RetainedMessage = { topic: p.topic, payload: Buffer.from(payload), contentType, qos: qos === 0 ? 0 : 1, from: s.principal.sub, ts: Date.now() };
  return s.ctx.retained.set(s.principal.org, msg).then(
    (stored) => {
      if (stored) return afterBus(s, toBus(s, p.topic, payload, contentType, qos), p);
      // Over the org's retained-topic or retained-bytes cap: refused whole (not published), as MQTT 5 0x97 says.
      s.lim.hit('retained_bytes');
      s.audit('limit.hit', { limit: 'retained_topics', topic: p.topic, transport: 'mqtt' });
      ack(s, Reason.quotaExceeded, p);
    },
    (err) => {
      s.ctx.log.warn({ err: (err as Error).message }, 'retained store unavailable');
      afterInbound(s, Reason.unspecified, p);
    },
  );
}

/**
 * PUBREL ends an inbound QoS 2 exchange: the id is free again, PUBCOMP answers. An id with no
 * exchange open gets PUBCOMP 0x92 in MQTT 5 (3.1.1 has no reason codes: a plain PUBCOMP, which is
 * also what a client resending PUBREL after a lost PUBCOMP needs).
 */
export function handlePubrel(s: MqttSession, p: IPubrelPacket): void {
  const known = s.qos2.delete(p.messageId ?? 0);
  if (!known && s.version === 5) s.send({ cmd: 'pubcomp', messageId: p.messageId, reasonCode: Reason.packetIdentifierNotFound });
  else s.send({ cmd: 'pubcomp', messageId: p.messageId });
}

/** `afterInbound` once the publish is done (a history topic waits for its append). */
function afterBus(s: MqttSession, code: number | Promise<number>, p: IPublishPacket): void | Promise<void> {
  return typeof code === 'number' ? afterInbound(s, code, p) : code.then((c) => afterInbound(s, c, p));
}

/**
 * Hands a PUBLISH to the bus; `unspecified` when the bus is down (nothing was published). A topic
 * of a namespace with history is appended to it first (docs/history.md), so the answer waits.
 */
function toBus(s: MqttSession, topic: string, payload: Buffer, contentType: ContentType, qos: 0 | 1 | 2): number | Promise<number> {
  const history = s.ctx.history;
  if (history?.retention(topic)) {
    return history.publish(s.principal.org, topic, payload, { contentType, from: s.principal.sub, qos: qos === 0 ? 0 : 1 }).then(
      () => Reason.success,
      (err) => {
        if (err instanceof HubError && err.code === 'unavailable') return Reason.unspecified;
        throw err;
      },
    );
  }
  try {
    s.ctx.bus.publish(s.principal.org, topic, payload, { contentType, from: s.principal.sub, qos: qos === 0 ? 0 : 1 });
    return Reason.success;
  } catch (err) {
    if (err instanceof HubError && err.code === 'unavailable') return Reason.unspecified;
    throw err;
  }
}

/** Acks a PUBLISH with `code`; a QoS 2 id that was taken (code < 0x80) waits for PUBREL. */
function ack(s: MqttSession, code: number, p: IPublishPacket): void {
  if (p.qos === 0 || s.state !== 'open') return;
  if (p.qos === 2 && code < 0x80) s.qos2.add(p.messageId!);
  s.send(ackPacket(p.qos, p.messageId, code, s.version));
}

/**
 * Acks a handled PUBLISH. A failure the client should retry (`unspecified`: the bus or the store
 * is down, nothing was taken) closes a 3.1.1 connection without an ack, so the client resends
 * after reconnecting; MQTT 5 gets the reason code instead.
 */
function afterInbound(s: MqttSession, code: number, p: IPublishPacket): void {
  if (code === Reason.unspecified && s.version === 4) {
    s.closeReason = 'hub unavailable';
    s.close();
    return;
  }
  ack(s, code, p);
}
