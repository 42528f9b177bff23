import mqttPacket, { type IConnectPacket, type Packet } from 'mqtt-packet';
import { compileGrants, type Grants } from '../acl/grants.ts';
import { isValidTopic } from '../acl/topic.ts';
import type { Principal } from '../auth/principal.ts';
import { detectContentType } from '../bus/contentType.ts';
import type { ClientContext } from '../core/context.ts';
import { AuthError, HubError } from '../errors.ts';
import type { RateLimits } from '../limits/connLimits.ts';
import type { Slot } from '../limits/limitService.ts';
import { sessionLog, type BridgeContext } from './bridgeContext.ts';
import { CONNECT_REFUSALS, ConnackV4, Reason, type ConnectRefusal } from './codes.ts';
import { isCommandTopic } from './commandPublish.ts';
import { clip, type MqttLimits } from './limits.ts';
import type { Version } from './outbound.ts';
import type { MqttSocket } from './outbox.ts';
import { admitIp, admitPrincipal } from './sessionLimits.ts';
import type { RetainedMessage } from './retained.ts';

/** A Last Will accepted at CONNECT. QoS 2 is kept as 1, the most the bridge delivers. */
export interface Will {
  topic: string;
  payload: Buffer;
  qos: 0 | 1;
  retain: boolean;
  /** MQTT 5 Will Delay Interval, seconds (absent: at once). */
  delayS?: number;
}

/** Milliseconds until `exp` (seconds since the epoch), clamped to [0, 2^31 - 1] so that setTimeout never overflows. */
export function msUntil(exp: number, now = Date.now()): number {
  return Math.min(Math.max(exp * 1000 - now, 0), 2 ** 31 - 1);
}

/** The Will of a CONNECT in the bridge's form (payload as a Buffer, QoS capped at 1). */
export function willOf(w: NonNullable<IConnectPacket['will']>): Will {
  const payload = typeof w.payload === 'string' ? Buffer.from(w.payload) : w.payload;
  const delayS = w.properties?.willDelayInterval;
  return { topic: w.topic, payload, qos: w.qos ? 1 : 0, retain: !!w.retain, ...(delayS ? { delayS } : {}) };
}

/**
 * Properties of a successful MQTT 5 CONNACK: what the bridge supports, and the session expiry it
 * grants when that differs from what the client asked (capped by ORGHUB_MQTT_MAX_SESSION_EXPIRY).
 */
export function connackProperties(limits: MqttLimits, requestedSessionExpiry: number | undefined, grantedSessionExpiry: number, assignedClientId: string | undefined): Record<string, unknown> {
  return {
    ...((requestedSessionExpiry ?? 0) !== grantedSessionExpiry ? { sessionExpiryInterval: grantedSessionExpiry } : {}),
    receiveMaximum: Math.min(limits.maxInflight, 65535),
    maximumPacketSize: limits.maxPacket,
    topicAliasMaximum: 0,
    retainAvailable: true,
    wildcardSubscriptionAvailable: true,
    subscriptionIdentifiersAvailable: false,
    sharedSubscriptionAvailable: false,
    ...(assignedClientId ? { assignedClientIdentifier: assignedClientId } : {}),
  };
}

/** The CONNACK of an accepted CONNECT: MQTT 5 adds `connackProperties`; 3.1.1 return code 0. */
export function acceptedConnack(p: IConnectPacket, present: boolean, limits: MqttLimits, grantedExpiryS: number, assignedClientId: string | undefined): Packet {
  if (p.protocolVersion !== 5) return { cmd: 'connack', sessionPresent: present, returnCode: ConnackV4.accepted };
  return { cmd: 'connack', sessionPresent: present, reasonCode: Reason.success, properties: connackProperties(limits, p.properties?.sessionExpiryInterval, grantedExpiryS, assignedClientId) };
}

/**
 * The 3.1.1 CONNACK of an accepted CONNECT as bytes (index: session present), encoded once: every
 * 3.1.1 reconnect sent the same four bytes through mqtt-packet's generator. Shared and never written
 * to (the outbox only copies it into the socket write).
 */
const ACCEPTED_V4: readonly [Buffer, Buffer] = [false, true].map((present) => mqttPacket.generate({ cmd: 'connack', sessionPresent: present, returnCode: ConnackV4.accepted }, { protocolVersion: 4 })) as [Buffer, Buffer];

/** `acceptedConnack` encoded: the cached bytes for 3.1.1, undefined for MQTT 5 (its properties vary; send the packet). */
export function acceptedConnackBytes(p: IConnectPacket, present: boolean): Buffer | undefined {
  return p.protocolVersion === 5 ? undefined : ACCEPTED_V4[present ? 1 : 0];
}

/** The CONNACK refusing a CONNECT for `why` (the codes of docs/mqtt.md). */
export function refusedConnack(version: Version, why: ConnectRefusal): Packet {
  const code = CONNECT_REFUSALS[why];
  return version === 5 ? { cmd: 'connack', sessionPresent: false, reasonCode: code.v5 } : { cmd: 'connack', sessionPresent: false, returnCode: code.v4 };
}

/** The data of the `session.connected` audit event of an accepted CONNECT. */
export function connectedAuditData(p: IConnectPacket, principal: Principal, via: MqttSocket['transport'], clientId: string, expiryS: number, present: boolean): Record<string, unknown> {
  return { transport: 'mqtt', via, protocolVersion: p.protocolVersion, clientId: clip(clientId), username: clip(p.username), roles: principal.roles, jti: principal.jti, sessionExpiry: expiryS, sessionPresent: present };
}

/** The outcome of authorising a CONNECT. */
export type ConnectDecision =
  | { ok: false; why: ConnectRefusal; auditReason?: string }
  | { ok: true; principal: Principal; grants: Grants; will: Will | undefined; slots: Slot[]; lim: RateLimits };

/**
 * Authorises a CONNECT: the JWT in the password (a revoked token, or any token while the
 * revocation list cannot be read, is refused by the verifier), the connection caps of hub/limits
 * (per IP before the token is checked, per org and user after), then the Will against the grammar
 * and the publish grants. No session state is touched; the session applies the decision (and
 * refuses with `session.refuse`). On success the decision carries the connection slots the session
 * must give back at close (`quotas.release`); on refusal every slot taken here is already given
 * back. A caller that no longer wants an accepting decision (its socket closed meanwhile) releases
 * `slots` itself.
 */
export async function authorizeConnect(ctx: BridgeContext, p: IConnectPacket, session: string, sock: Pick<MqttSocket, 'transport' | 'remote'>): Promise<ConnectDecision> {
  const v5 = p.protocolVersion === 5;
  if (v5 && p.properties?.authenticationMethod) return { ok: false, why: 'auth_method_unsupported' };
  if (!p.clientId && !p.clean && !v5) return { ok: false, why: 'client_id_required' };
  const token = p.password ? p.password.toString('utf8') : '';
  if (!token) return { ok: false, why: 'token_missing' };
  // Per-IP cap before the token is checked (hub/limits).
  const byIp = await admitIp(ctx.quotas, sock.transport, sock.remote);
  if (!byIp.ok) return capped(ctx, session, byIp.limit, byIp.max, undefined);
  const slots: Slot[] = [...byIp.slots];
  let principal: Principal;
  try {
    principal = await ctx.verifier.verify(token);
  } catch (err) {
    // The revocation list is unreadable (Redis down): fail closed, the client retries later.
    if (err instanceof HubError && err.code === 'unavailable') return refused(ctx, slots, 'unavailable', err.message);
    if (!(err instanceof AuthError)) ctx.log.warn({ err }, 'token verification failed unexpectedly');
    return refused(ctx, slots, 'token_invalid', err instanceof AuthError ? err.reason : 'token_invalid');
  }
  const admitted = await admitPrincipal(ctx.quotas, principal);
  if (!admitted.ok) {
    ctx.quotas.release(slots);
    return capped(ctx, session, admitted.limit, admitted.max, principal.org);
  }
  slots.push(...admitted.slots);
  const grants = compileGrants(principal, ctx.roleGrants);
  if (!p.will) return { ok: true, principal, grants, will: undefined, slots, lim: admitted.lim };
  // A will on `$cmd/...` would be published as a plain message, not run as a command: refuse it.
  if (!isValidTopic(p.will.topic) || isCommandTopic(p.will.topic)) return refused(ctx, slots, 'will_topic_invalid');
  // Fleet command, declared command and presence topics are the hub's own, whatever the grants say (as Publisher.check).
  if (ctx.publisher.reserved(p.will.topic)) {
    ctx.audit.record(principal.org, 'publish.denied', { topic: p.will.topic, transport: 'mqtt', will: true, reason: 'reserved' }, { actor: principal.sub, session });
    return refused(ctx, slots, 'will_not_granted');
  }
  if (!grants.canPublish(p.will.topic)) {
    ctx.audit.record(principal.org, 'publish.denied', { topic: p.will.topic, transport: 'mqtt', will: true }, { actor: principal.sub, session });
    return refused(ctx, slots, 'will_not_granted');
  }
  return { ok: true, principal, grants, will: willOf(p.will), slots, lim: admitted.lim };
}

/**
 * A CONNECT refused after its slots were taken: they are given back. (A function, not a closure in
 * `authorizeConnect`: under tsx every named closure costs a `name` defineProperty per CONNECT.)
 */
function refused(ctx: BridgeContext, slots: Slot[], why: ConnectRefusal, auditReason?: string): ConnectDecision {
  ctx.quotas.release(slots);
  return { ok: false, why, auditReason };
}

/** A CONNECT refused by a connection cap (hub/limits): counted, audited, CONNACK `connection_limit`. */
function capped(ctx: BridgeContext, session: string, limit: Parameters<RateLimits['hit']>[0], max: number, org: string | undefined): ConnectDecision {
  ctx.quotas.hit(limit, 'mqtt');
  ctx.audit.record(org, 'limit.hit', { limit, max, transport: 'mqtt' }, { session });
  return { ok: false, why: 'connection_limit' };
}

/**
 * Publishes the Will through the Publisher on its org topic (storing it first when retained; a
 * Redis failure still publishes live). The topic was checked against the grants at CONNECT.
 */
export function publishWill(ctx: BridgeContext, client: ClientContext, w: Will): void {
  const org = client.principal.org;
  const contentType = detectContentType(w.payload);
  const published = () => ctx.audit.record(org, 'mqtt.will_published', { topic: w.topic, bytes: w.payload.length, retain: w.retain }, { actor: client.principal.sub, session: client.session });
  const failed = (err: unknown) => sessionLog(ctx, client.session).warn({ err: (err as Error).message }, 'last will not published');
  const go = () => {
    try {
      // A history topic is appended first (it gets its offset), so the send may be a promise.
      const r = ctx.publisher.send(client, w.topic, w.payload, contentType, { qos: w.qos });
      if (r instanceof Promise) r.then(published, failed);
      else published();
    } catch (err) {
      failed(err);
    }
  };
  if (!w.retain) return go();
  const msg: RetainedMessage = { topic: w.topic, payload: w.payload, contentType, qos: w.qos, from: client.principal.sub, ts: Date.now() };
  ctx.retained.set(org, msg).then(
    (stored) => {
      if (!stored) sessionLog(ctx, client.session).warn({ topic: w.topic }, 'retained will not stored: org at ORGHUB_MQTT_MAX_RETAINED; published live only');
      go();
    },
    (err) => {
      ctx.log.warn({ err: (err as Error).message }, 'retained will not stored');
      go();
    },
  );
}
