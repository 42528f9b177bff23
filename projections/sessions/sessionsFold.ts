import type { RecordedEvent } from '../../hub/eventstore/eventStore.ts';
import { BadEventError, foldEach, isPlainObject, optInt, optString, type Folded } from '../projection.ts';

/** The role that makes a principal a device (hub/acl/roles.ts); its device id is the token `sub`. */
export const DEVICE_ROLE = 'device';

const CONNECTED = 'audit.session.connected';
const DISCONNECTED = 'audit.session.disconnected';

/**
 * What one batch knows about a session; NULL means "not known from this batch" and is merged with
 * COALESCE in SQL, so the result does not depend on how events were cut into batches.
 */
export interface SessionPatch {
  org_id: string;
  id: string;
  actor: string;
  device_id: string | null;
  transport: string | null;
  client_id: string | null;
  node: string | null;
  connected_at: string | null;
  disconnected_at: string | null;
  duration_ms: number | null;
  reason: string | null;
  close_code: number | null;
}

export function isSessionEvent(e: RecordedEvent): boolean {
  return e.type === CONNECTED || e.type === DISCONNECTED;
}

function patchOf(e: RecordedEvent): SessionPatch {
  const data = e.data;
  if (!isPlainObject(data)) throw new BadEventError('session data must be a JSON object');
  const m = e.metadata;
  if (typeof m?.actor !== 'string') throw new BadEventError('metadata.actor must be a string');
  if (typeof m.session !== 'string' || m.session === '') throw new BadEventError('metadata.session is required for session events');
  const base: SessionPatch = {
    org_id: e.org, id: m.session, actor: m.actor, device_id: null, transport: optString(data, 'transport'), client_id: optString(data, 'clientId'),
    node: m.node ?? null, connected_at: null, disconnected_at: null, duration_ms: null, reason: null, close_code: null,
  };
  if (e.type === CONNECTED) {
    const roles = data.roles;
    if (roles !== undefined && !(Array.isArray(roles) && roles.every((r) => typeof r === 'string'))) throw new BadEventError('data.roles must be an array of strings');
    base.connected_at = e.recordedAt;
    base.device_id = Array.isArray(roles) && roles.includes(DEVICE_ROLE) ? m.actor : null;
  } else {
    // The session's node is the one it connected to: a node that reaped a dead one records the
    // end (reason `node_lost`, hub/presence/tracker.ts) under its own node id.
    base.node = null;
    base.disconnected_at = e.recordedAt;
    base.duration_ms = optInt(data, 'durationMs');
    base.reason = optString(data, 'reason');
    base.close_code = optInt(data, 'code');
  }
  return base;
}

/** Later knowledge wins field by field; unknown (null) never erases known. */
function merge(a: SessionPatch, b: SessionPatch): SessionPatch {
  const out = { ...a };
  for (const k of Object.keys(b) as (keyof SessionPatch)[]) {
    if (b[k] !== null) (out as Record<string, unknown>)[k] = b[k];
  }
  return out;
}

/** Folds session events into one patch per (org, session), in first-seen order. */
export function foldSessions(events: readonly RecordedEvent[]): Folded<SessionPatch> {
  const { rows, rejected } = foldEach(events, (e) => (isSessionEvent(e) ? patchOf(e) : undefined));
  const byKey = new Map<string, SessionPatch>();
  for (const p of rows) {
    const key = `${p.org_id}\u0000${p.id}`;
    const prev = byKey.get(key);
    byKey.set(key, prev ? merge(prev, p) : p);
  }
  return { rows: [...byKey.values()], rejected };
}
