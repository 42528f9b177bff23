import type { IConnectPacket } from 'mqtt-packet';
import { compileGrants, type Grants } from '../acl/grants.ts';
import { isValidTopic } from '../acl/topic.ts';
import type { Principal } from '../auth/principal.ts';
import { detectContentType } from '../bus/contentType.ts';
import type { ClientContext } from '../core/context.ts';
import { AuthError } from '../errors.ts';
import type { BridgeContext } from './bridgeContext.ts';
import type { ConnectRefusal } from './codes.ts';
import { isCommandTopic } from './commandPublish.ts';
import type { MqttLimits } from './limits.ts';
import type { RetainedMessage } from './retained.ts';

/** A Last Will accepted at CONNECT. QoS 2 is kept as 1, the most the bridge delivers. */
export interface Will {
  topic: string;
  payload: Buffer;
  qos: 0 | 1;
  retain: boolean;
}

/** Milliseconds until `exp` (seconds since the epoch), clamped to [0, 2^31 - 1] so that setTimeout never overflows. */
export function msUntil(exp: number, now = Date.now()): number {
  return Math.min(Math.max(exp * 1000 - now, 0), 2 ** 31 - 1);
}

/** The Will of a CONNECT in the bridge's form (payload as a Buffer, QoS capped at 1). */
export function willOf(w: NonNullable<IConnectPacket['will']>): Will {
  const payload = typeof w.payload === 'string' ? Buffer.from(w.payload) : w.payload;
  return { topic: w.topic, payload, qos: w.qos ? 1 : 0, retain: !!w.retain };
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

/** The outcome of authorising a CONNECT. */
export type ConnectDecision =
  | { ok: false; why: ConnectRefusal; auditReason?: string }
  | { ok: true; principal: Principal; grants: Grants; will: Will | undefined };

/**
 * Authorises a CONNECT: the JWT in the password, then the Will against the grammar and the
 * publish grants. No session state is touched; the session applies the decision (and refuses
 * with `session.refuse`). This is where CONNECT is authorised: a connection cap or a revocation
 * check belongs here, as one more refusal in `CONNECT_REFUSALS`.
 */
export async function authorizeConnect(ctx: BridgeContext, p: IConnectPacket, session: string): Promise<ConnectDecision> {
  const v5 = p.protocolVersion === 5;
  if (v5 && p.properties?.authenticationMethod) return { ok: false, why: 'auth_method_unsupported' };
  if (!p.clientId && !p.clean && !v5) return { ok: false, why: 'client_id_required' };
  const token = p.password ? p.password.toString('utf8') : '';
  if (!token) return { ok: false, why: 'token_missing' };
  let principal: Principal;
  try {
    principal = await ctx.verifier.verify(token);
  } catch (err) {
    if (!(err instanceof AuthError)) ctx.log.warn({ err }, 'token verification failed unexpectedly');
    return { ok: false, why: 'token_invalid', auditReason: err instanceof AuthError ? err.reason : 'token_invalid' };
  }
  const grants = compileGrants(principal, ctx.roleGrants);
  if (!p.will) return { ok: true, principal, grants, will: undefined };
  // A will on `$cmd/...` would be published as a plain message, not run as a command: refuse it.
  if (!isValidTopic(p.will.topic) || isCommandTopic(p.will.topic)) return { ok: false, why: 'will_topic_invalid' };
  if (!grants.canPublish(p.will.topic)) {
    ctx.audit.record(principal.org, 'publish.denied', { topic: p.will.topic, transport: 'mqtt', will: true }, { actor: principal.sub, session });
    return { ok: false, why: 'will_not_granted' };
  }
  return { ok: true, principal, grants, will: willOf(p.will) };
}

/**
 * Publishes the Will through the Publisher on its org topic (storing it first when retained; a
 * Redis failure still publishes live). The topic was checked against the grants at CONNECT.
 */
export function publishWill(ctx: BridgeContext, client: ClientContext, w: Will): void {
  const org = client.principal.org;
  const contentType = detectContentType(w.payload);
  const go = () => {
    try {
      ctx.publisher.send(client, w.topic, w.payload, contentType, { qos: w.qos });
      ctx.audit.record(org, 'mqtt.will_published', { topic: w.topic, bytes: w.payload.length, retain: w.retain }, { actor: client.principal.sub, session: client.session });
    } catch (err) {
      ctx.log.warn({ err: (err as Error).message, session: client.session }, 'last will not published');
    }
  };
  if (!w.retain) return go();
  const msg: RetainedMessage = { topic: w.topic, payload: w.payload, contentType, qos: w.qos, from: client.principal.sub, ts: Date.now() };
  ctx.retained.set(org, msg).then(
    (stored) => {
      if (!stored) ctx.log.warn({ topic: w.topic, session: client.session }, 'retained will not stored: org at ORGHUB_MQTT_MAX_RETAINED; published live only');
      go();
    },
    (err) => {
      ctx.log.warn({ err: (err as Error).message }, 'retained will not stored');
      go();
    },
  );
}
