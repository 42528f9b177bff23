import type { RoleGrants } from '../acl/grants.ts';
import type { AuditSink } from '../audit/audit.ts';
import type { TokenVerifier } from '../auth/principal.ts';
import type { Bus } from '../bus/bus.ts';
import type { CommandHandler } from '../core/commands.ts';
import type { Logger } from '../log.ts';
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
  retained: RetainedStore;
  fanout: MqttFanout;
  flusher: FlushScheduler;
  log: Logger;
  limits: MqttLimits;
  /** Live sessions on this node (keepalive sweep, shutdown). */
  sessions: Set<MqttSession>;
  /** Registers `s` under (org, client id), disconnecting an older session with the same id on this node. */
  takeOver(s: MqttSession): void;
  releaseClientId(s: MqttSession): void;
}

/** Client-id registry for session takeover on this node (MQTT 3.1.1 §3.1.4-2). Keys never reach NATS. */
export function createClientIds(): Pick<BridgeContext, 'takeOver' | 'releaseClientId'> {
  const byId = new Map<string, MqttSession>();
  const keyOf = (s: MqttSession) => `${s.principal.org}\u0000${s.clientId}`;
  return {
    takeOver(s) {
      const key = keyOf(s);
      const old = byId.get(key);
      byId.set(key, s);
      if (old && old !== s) old.disconnect(0x8e, 'session taken over');
    },
    releaseClientId(s) {
      if (!s.principal || !s.clientId) return;
      const key = keyOf(s);
      if (byId.get(key) === s) byId.delete(key);
    },
  };
}
