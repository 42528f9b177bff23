import type { IPublishPacket } from 'mqtt-packet';
import type { Principal } from '../auth/principal.ts';
import type { RateLimits } from '../limits/connLimits.ts';
import type { Admission, LimitService, Slot } from '../limits/limitService.ts';
import { Reason } from './codes.ts';
import type { Version } from './outbound.ts';
import type { SessionPort } from './sessionPort.ts';

/**
 * The MQTT side of hub/limits: admission at CONNECT, and size and rate checks per PUBLISH. Kept
 * apart from the session so that the session files only call in at CONNECT, PUBLISH, SUBSCRIBE
 * and teardown. docs/mqtt.md "Limits" lists the codes.
 */

/** The peer's address without the port (TCP `remote` is `addr:port`; WebSocket's is the address). */
export function ipOf(transport: 'tcp' | 'ws', remote: string): string {
  if (transport === 'ws') return remote;
  const i = remote.lastIndexOf(':');
  return i > 0 ? remote.slice(0, i) : remote;
}

/** Per-IP admission before the token is checked; the slots to give back, or the refusal. */
export async function admitIp(quotas: LimitService, transport: 'tcp' | 'ws', remote: string): Promise<Admission> {
  return quotas.admitIp(ipOf(transport, remote));
}

/** Org and user admission once the principal is known; on success the session's rate limits. */
export async function admitPrincipal(quotas: LimitService, p: Principal): Promise<{ ok: true; slots: Slot[]; lim: RateLimits } | (Admission & { ok: false })> {
  const a = await quotas.admit(p);
  if (!a.ok) return a;
  const lim = quotas.connection(p, 'mqtt');
  await lim.settle('pub');
  return { ok: true, slots: a.slots, lim };
}

/** What to do with a PUBLISH over a limit: refuse it (MQTT 5), slow the client (3.1.1), or drop it (QoS 0). */
export type OverLimit = { action: 'refuse'; code: number } | { action: 'drop' } | { action: 'delay'; ms: number } | { action: 'close' };

/**
 * The policy of docs/mqtt.md "Limits", pure: QoS 0 is dropped (and counted); MQTT 5 QoS 1/2 gets
 * reason 0x97 (quota exceeded); MQTT 3.1.1 has no refusing PUBACK, so a QoS 1/2 PUBLISH over a
 * rate waits until the bucket refills (the connection's later packets wait behind it, so the
 * client is slowed as TCP backpressure would). Oversized messages close a 3.1.1 connection.
 */
export function overLimitAction(qos: number, version: Version, kind: 'rate' | 'size', waitMs: number, abusive: boolean): OverLimit {
  if (abusive) return { action: 'close' };
  if (qos === 0) return { action: 'drop' };
  if (version === 5) return { action: 'refuse', code: Reason.quotaExceeded };
  return kind === 'rate' ? { action: 'delay', ms: waitMs } : { action: 'close' };
}

/**
 * Checks a PUBLISH (or `$cmd/` command) against the tier's size and rate limits. Returns undefined
 * when it may go on; otherwise handles it (ack, drop, wait or close) and returns what the
 * publish handler should return. `retry` handles the packet again after a 3.1.1 wait.
 */
export function checkPublish(s: SessionPort, p: IPublishPacket, bytes: number, command: boolean, retry: () => void | Promise<void>): { done: void | Promise<void> } | undefined {
  const lim = s.lim;
  const quotas = s.ctx.quotas;
  let kind: 'rate' | 'size';
  let wait = 0;
  if (bytes > lim.maxMessageBytes) {
    kind = 'size';
    lim.hit('message_size');
    s.audit('limit.hit', { limit: 'message_size', max: lim.maxMessageBytes, transport: 'mqtt' });
  } else {
    wait = command ? lim.command() : lim.publish();
    if (wait === 0) return undefined;
    kind = 'rate';
    s.audit('limit.hit', { limit: command ? 'rate_command' : 'rate_publish', transport: 'mqtt' });
  }
  const a = overLimitAction(p.qos, s.version, kind, wait, kind === 'rate' && lim.abusive());
  // Over a rate, the socket is not read for the retry time (it grows while the client keeps
  // being refused, hub/limits/backoff.ts) and later packets wait behind it: a client that keeps
  // sending is held back by TCP, not parsed and refused packet by packet.
  const held = kind === 'rate' && a.action !== 'close' ? s.hold(wait) : undefined;
  switch (a.action) {
    case 'drop':
      quotas.dropped++;
      return { done: held };
    case 'refuse':
      if (s.open) s.send({ cmd: p.qos === 1 ? 'puback' : 'pubrec', messageId: p.messageId, reasonCode: a.code });
      return { done: held };
    case 'delay':
      return { done: held!.then(() => (s.open ? retry() : undefined)) };
    case 'close':
      if (kind === 'rate') {
        lim.hit('abuse');
        s.audit('limit.hit', { limit: 'abuse', transport: 'mqtt' });
        s.disconnect(Reason.messageRateTooHigh, 'rate limit abuse');
      } else s.disconnect(Reason.packetTooLarge, 'message above the tier size');
      return { done: undefined };
  }
}
