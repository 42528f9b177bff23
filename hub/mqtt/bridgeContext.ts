import { createHash } from 'node:crypto';
import type { RoleGrants } from '../acl/grants.ts';
import type { AuditSink } from '../audit/audit.ts';
import type { TokenVerifier } from '../auth/principal.ts';
import type { Bus } from '../bus/bus.ts';
import type { CommandHandler } from '../core/commands.ts';
import type { FleetDelivery } from '../fleet/fleet.ts';
import type { PresenceTracker } from '../presence/tracker.ts';
import type { HistoryRecorder } from '../history/subscription.ts';
import type { Logger } from '../log.ts';
import type { LimitService } from '../limits/limitService.ts';
import type { SessionRegistry } from '../core/sessions.ts';
import type { MqttLimits } from './limits.ts';
import type { MqttFanout } from './mqttFanout.ts';
import type { MqttSession } from './mqttSession.ts';
import type { FlushScheduler } from './outbound.ts';
import type { RetainedStore } from './retained.ts';

/** Everything a session needs from the bridge; built once per hub node. */
export interface BridgeContext {
  verifier: TokenVerifier;
  roleGrants: RoleGrants;
  bus: Bus;
  audit: AuditSink;
  commands?: CommandHandler;
  /** Fleet command delivery for `$commands/<device>` subscriptions. */
  fleet?: FleetDelivery;
  presence?: PresenceTracker;
  /** History topics are appended before they are published. */
  history?: HistoryRecorder;
  retained: RetainedStore;
  fanout: MqttFanout;
  flusher: FlushScheduler;
  log: Logger;
  limits: MqttLimits;
  /** Rate limits, connection caps and quotas shared with the other transports (hub/limits). */
  quotas: LimitService;
  /** Live sessions on this node (keepalive sweep, shutdown). */
  sessions: Set<MqttSession>;
  /** The node's registry of live sessions across transports (revocation ends sessions through it). */
  live?: SessionRegistry;
  /** Registers `s` under (org, client id), disconnecting an older session with the same id on any node. */
  takeOver(s: MqttSession): void;
  releaseClientId(s: MqttSession): void;
}

/** A takeover announcement, as sent between nodes. */
interface TakeoverNotice {
  /** SHA-256 of (org, sub, client id): the id itself never reaches NATS. */
  k: string;
  node: string;
  session: string;
  /** When the announcing node registered the session (ms since the epoch). */
  at: number;
}

export const TAKEOVER_CONTROL = 'mqtt.takeover';

/**
 * Client-id registry for session takeover (MQTT 3.1.1 §3.1.4-2, MQTT 5 §3.1.4-3), across nodes: a
 * session registered on this node closes an older one with the same (org, client id) here, and is
 * announced on the bus so that every other node closes its own older one. When two nodes register
 * the same id at nearly the same moment, the later registration (then the greater session id)
 * wins on both, so exactly one survives. Keyed by a hash of (org, sub, client id): two orgs, and two
 * principals of one org, never take over each other's sessions (nor fire each other's Will), and
 * client ids do not travel.
 */
export function createClientIds(deps: { bus: Bus; nodeId: string; log: Logger }): Pick<BridgeContext, 'takeOver' | 'releaseClientId'> & { close(): void } {
  const byKey = new Map<string, { s: MqttSession; at: number }>();
  // The sub is length-prefixed: it may contain any character, and no (sub, client id) pair may spell another.
  const keyOf = (s: MqttSession) => createHash('sha256').update(s.principal.org).update('\u0000').update(`${s.principal.sub.length}:${s.principal.sub}`).update('\u0000').update(s.clientId).digest('base64url');
  const newer = (a: { at: number; session: string }, b: { at: number; session: string }) => a.at > b.at || (a.at === b.at && a.session > b.session);

  const unsubscribe = deps.bus.subscribeControl(TAKEOVER_CONTROL, (payload) => {
    let n: TakeoverNotice;
    try {
      n = JSON.parse(Buffer.from(payload).toString('utf8')) as TakeoverNotice;
    } catch {
      return;
    }
    if (n.node === deps.nodeId || typeof n.k !== 'string' || typeof n.at !== 'number' || typeof n.session !== 'string') return;
    const local = byKey.get(n.k);
    if (local && newer(n, { at: local.at, session: local.s.session })) {
      byKey.delete(n.k);
      local.s.disconnect(0x8e, 'session taken over');
    }
  });

  return {
    takeOver(s) {
      const key = keyOf(s);
      const at = Date.now();
      const old = byKey.get(key);
      byKey.set(key, { s, at });
      if (old && old.s !== s) old.s.disconnect(0x8e, 'session taken over');
      const notice: TakeoverNotice = { k: key, node: deps.nodeId, session: s.session, at };
      try {
        deps.bus.publishControl(TAKEOVER_CONTROL, Buffer.from(JSON.stringify(notice)));
      } catch (err) {
        // NATS is down: takeover still holds on this node; other nodes are not told.
        deps.log.warn({ err: (err as Error).message, session: s.session }, 'mqtt takeover not announced to other nodes');
      }
    },
    releaseClientId(s) {
      if (!s.principal || !s.clientId) return;
      const key = keyOf(s);
      if (byKey.get(key)?.s === s) byKey.delete(key);
    },
    close: unsubscribe,
  };
}
