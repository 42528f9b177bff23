import { isReservedTopic } from '../fleet/fleet.ts';
import type { IConnectPacket } from 'mqtt-packet';
import { compileGrants } from '../acl/grants.ts';
import { isValidTopic } from '../acl/topic.ts';
import { AuthError, HubError } from '../errors.ts';
import type { Principal } from '../auth/principal.ts';
import { CONNECT_REFUSALS, ConnackV4, Reason, type ConnectRefusal } from './codes.ts';
import { detectContentType } from '../bus/contentType.ts';
import { isCommandTopic } from './inbound.ts';
import { clip, type MqttLimits } from './limits.ts';
import { admitIp, admitPrincipal } from './sessionLimits.ts';
import type { MqttSession } from './mqttSession.ts';
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
 * Properties of a successful MQTT 5 CONNACK: what the bridge supports, and session expiry 0 when
 * the client asked for a persistent session (none is kept, docs/mqtt.md "Sessions").
 */
export function connackProperties(limits: MqttLimits, requestedSessionExpiry: number | undefined, assignedClientId: string | undefined): Record<string, unknown> {
  return {
    ...(requestedSessionExpiry ? { sessionExpiryInterval: 0 } : {}),
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

/** Sends the refusing CONNACK and closes without a Will. `auditReason` defaults to `why`. */
function refuse(s: MqttSession, why: ConnectRefusal, auditReason: string = why): void {
  const code = CONNECT_REFUSALS[why];
  s.audit('session.rejected', { reason: auditReason, transport: 'mqtt', via: s.sock.transport, clientId: clip(s.clientId) }, true);
  s.send(s.version === 5 ? { cmd: 'connack', sessionPresent: false, reasonCode: code.v5 } : { cmd: 'connack', sessionPresent: false, returnCode: code.v4 });
  s.closeReason = auditReason;
  s.endAfterFlush = true;
  s.suppressWill = true;
  s.state = 'closed';
  s.release();
}

/** A CONNECT refused by a connection cap (hub/limits): counted, audited, CONNACK `connection_limit`. */
function refuseCapped(s: MqttSession, limit: Parameters<MqttSession['lim']['hit']>[0], max: number, org: string | undefined): void {
  s.ctx.quotas.hit(limit, 'mqtt');
  s.ctx.audit.record(org, 'limit.hit', { limit, max, transport: 'mqtt' }, { session: s.session });
  refuse(s, 'connection_limit');
}

/**
 * CONNECT: verifies the JWT in the password, checks the Will against the grammar and the publish
 * grants, registers the client id (takeover), answers CONNACK and replays the packets that
 * arrived meanwhile. Refusals answer CONNACK with the code of docs/mqtt.md and close.
 */
export async function handleConnect(s: MqttSession, p: IConnectPacket): Promise<void> {
  const v = p.protocolVersion === 5 ? 5 : 4;
  s.version = v;
  s.clientId = p.clientId ?? '';
  s.keepaliveMs = (p.keepalive ?? 0) * 1000;
  const props = p.properties;
  if (v === 5) {
    s.inflight.limitTo(props?.receiveMaximum);
    if (props?.maximumPacketSize) s.maxOut = props.maximumPacketSize;
  }
  if (v === 5 && props?.authenticationMethod) return refuse(s, 'auth_method_unsupported');
  if (s.clientId === '' && !p.clean && v === 4) return refuse(s, 'client_id_required');
  const token = p.password ? p.password.toString('utf8') : '';
  if (!token) return refuse(s, 'token_missing');
  // Per-IP cap before the token is checked (hub/limits); slots go back in release().
  const byIp = await admitIp(s.ctx.quotas, s.sock.transport, s.sock.remote);
  if (!byIp.ok) return refuseCapped(s, byIp.limit, byIp.max, undefined);
  s.slots.push(...byIp.slots);
  if ((s.state as string) === 'closed') return s.release();
  let principal: Principal;
  try {
    principal = await s.ctx.verifier.verify(token);
  } catch (err) {
    if (err instanceof HubError && err.code === 'unavailable') return refuse(s, 'unavailable', err.message);
    if (!(err instanceof AuthError)) s.ctx.log.warn({ err }, 'token verification failed unexpectedly');
    return refuse(s, 'token_invalid', err instanceof AuthError ? err.reason : 'token_invalid');
  }
  if (s.state === 'closed') return;
  const admitted = await admitPrincipal(s.ctx.quotas, principal);
  if (!admitted.ok) return refuseCapped(s, admitted.limit, admitted.max, principal.org);
  s.slots.push(...admitted.slots);
  s.lim = admitted.lim;
  if ((s.state as string) === 'closed') return s.release();
  s.principal = principal;
  s.grants = compileGrants(principal, s.ctx.roleGrants);
  if (p.will) {
    // A will on `$cmd/...` would be published as a plain message, not run as a command: refuse it.
    if (!isValidTopic(p.will.topic) || isCommandTopic(p.will.topic)) return refuse(s, 'will_topic_invalid');
    if (isReservedTopic(p.will.topic) || !s.grants.canPublish(p.will.topic)) {
      s.audit('publish.denied', { topic: p.will.topic, transport: 'mqtt', will: true });
      return refuse(s, 'will_not_granted');
    }
    s.will = willOf(p.will);
  }
  let assigned: string | undefined;
  if (s.clientId === '') s.clientId = assigned = `orghub-${s.session}`;
  s.ctx.takeOver(s);
  s.state = 'open';
  s.ctx.presence?.connected(principal.org, { session: s.session, sub: principal.sub, clientId: s.clientId, transport: 'mqtt' });
  s.expTimer = setTimeout(() => {
    // The identity behind the will has lapsed, so the will is not published.
    s.suppressWill = true;
    s.disconnect(Reason.maximumConnectTime, 'token expired');
  }, msUntil(principal.exp));
  if (v === 5) {
    s.send({ cmd: 'connack', sessionPresent: false, reasonCode: Reason.success, properties: connackProperties(s.ctx.limits, props?.sessionExpiryInterval, assigned) });
  } else {
    s.send({ cmd: 'connack', sessionPresent: false, returnCode: ConnackV4.accepted });
  }
  s.audit('session.connected', {
    transport: 'mqtt',
    via: s.sock.transport,
    protocolVersion: p.protocolVersion,
    clientId: clip(s.clientId),
    username: clip(p.username),
    roles: principal.roles,
    jti: principal.jti,
  });
  // Registered last: a revocation that arrived during CONNECT ends the session right here.
  s.live = {
    session: s.session,
    transport: 'mqtt',
    get principal() {
      return s.principal;
    },
    end(_why, reason) {
      // Revoked or suspended: the identity behind the will is void, so the will is not published (as on expiry).
      s.suppressWill = true;
      s.disconnect(Reason.administrativeAction, reason);
    },
  };
  s.ctx.live?.add(s.live);
  const early = s.early;
  s.early = [];
  for (const q of early) {
    if (s.state !== 'open') break;
    s.dispatch(q);
  }
}

/** Publishes the Will on its org topic (storing it first when retained; a Redis failure still publishes live). */
export function publishWill(s: MqttSession, w: Will): void {
  const org = s.principal.org;
  const contentType = detectContentType(w.payload);
  const go = () => {
    try {
      const meta = { contentType, from: s.principal.sub, qos: w.qos };
      if (s.ctx.history?.retention(w.topic)) {
        // A history topic gets its offset first, like every other publish on it.
        s.ctx.history.publish(org, w.topic, w.payload, meta).then(
          () => s.audit('mqtt.will_published', { topic: w.topic, bytes: w.payload.length, retain: w.retain }),
          (err) => s.ctx.log.warn({ err: (err as Error).message, session: s.session }, 'last will not published'),
        );
        return;
      }
      s.ctx.bus.publish(org, w.topic, w.payload, meta);
      s.audit('mqtt.will_published', { topic: w.topic, bytes: w.payload.length, retain: w.retain });
    } catch (err) {
      s.ctx.log.warn({ err: (err as Error).message, session: s.session }, 'last will not published');
    }
  };
  if (!w.retain) return go();
  const msg: RetainedMessage = { topic: w.topic, payload: w.payload, contentType, qos: w.qos, from: s.principal.sub, ts: Date.now() };
  s.ctx.retained.set(org, msg).then(
    (stored) => {
      if (!stored) s.ctx.log.warn({ topic: w.topic, session: s.session }, 'retained will not stored: org at ORGHUB_MQTT_MAX_RETAINED; published live only');
      go();
    },
    (err) => {
      s.ctx.log.warn({ err: (err as Error).message }, 'retained will not stored');
      go();
    },
  );
}
