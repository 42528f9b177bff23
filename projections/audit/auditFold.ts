import type { RecordedEvent } from '../../hub/eventstore/eventStore.ts';
import { dataJson } from '../rawData.ts';
import { BadEventError, foldEach, isPlainObject, optString, type Folded } from '../projection.ts';

/** Audit events are `audit.<type>` in each org's `audit` stream (hub/audit/storeAuditSink.ts). */
export const AUDIT_PREFIX = 'audit.';

/** One row of `audit_log`. `type` is the audit type without the `audit.` prefix (session.connected). */
export interface AuditRow {
  org_id: string;
  id: string;
  recorded_at: string;
  global_position: string;
  type: string;
  actor: string;
  session: string | null;
  topic: string | null;
  outcome: AuditOutcome;
  correlation_id: string | null;
  node: string | null;
  data: string;
}

/**
 * What the decision was: `allowed` (the action happened), `denied` (refused by auth or ACL),
 * `limited` (a limit refused or cut it), `error` (the client broke the protocol), `other` (an audit
 * type this version does not know yet; still recorded, never dead-lettered, so a newer hub never
 * stalls an older projector).
 */
export type AuditOutcome = 'allowed' | 'denied' | 'limited' | 'error' | 'other';

const OUTCOMES: Record<string, AuditOutcome> = {
  'session.connected': 'allowed',
  'session.disconnected': 'allowed',
  'session.refreshed': 'allowed',
  'mqtt.will_published': 'allowed',
  'admin.action': 'allowed',
  'session.rejected': 'denied',
  'session.refresh_rejected': 'denied',
  'subscribe.denied': 'denied',
  'publish.denied': 'denied',
  'command.denied': 'denied',
  'limit.hit': 'limited',
  'session.protocol_violation': 'error',
};

export function auditOutcome(type: string): AuditOutcome {
  return OUTCOMES[type] ?? 'other';
}

export function isAuditEvent(e: RecordedEvent): boolean {
  return e.type.startsWith(AUDIT_PREFIX);
}

/** One audit event to its row; throws BadEventError on a shape no hub writes. */
export function auditRow(e: RecordedEvent): AuditRow {
  const data = e.data;
  if (!isPlainObject(data)) throw new BadEventError('audit data must be a JSON object');
  const type = e.type.slice(AUDIT_PREFIX.length);
  if (type === '') throw new BadEventError('empty audit type');
  const m = e.metadata;
  if (!isPlainObject(m) || typeof m.actor !== 'string') throw new BadEventError('metadata.actor must be a string');
  // The topic column holds what the decision was about: a topic, or a subscription pattern.
  const topic = optString(data, 'topic') ?? optString(data, 'pattern');
  return {
    org_id: e.org,
    id: e.id,
    recorded_at: e.recordedAt,
    global_position: e.globalPosition.toString(),
    type,
    actor: m.actor,
    session: m.session ?? null,
    topic,
    outcome: auditOutcome(type),
    correlation_id: m.correlationId ?? null,
    node: m.node ?? null,
    data: dataJson(e),
  };
}

export function foldAudit(events: readonly RecordedEvent[]): Folded<AuditRow> {
  return foldEach(events, (e) => (isAuditEvent(e) ? auditRow(e) : undefined));
}

/** First instant of the UTC month of an ISO time: one partition per distinct value. */
export function monthOf(iso: string): string {
  return `${iso.slice(0, 7)}-01T00:00:00.000Z`;
}
