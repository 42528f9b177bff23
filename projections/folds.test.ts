import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { auditOutcome, foldAudit, monthOf } from './audit/auditFold.ts';
import { deviceOfTopic, foldCommands } from './commands/commandsFold.ts';
import { foldOrgs } from './orgs/orgsFold.ts';
import { foldSessions } from './sessions/sessionsFold.ts';
import { selectProjections } from './registry.ts';
import { planRetention, partitionEnd } from './retention.ts';
import { progressLine } from './progress.ts';
import { evaluateLag } from './status.ts';
import { recorded } from './testEvents.ts';

describe('projections - audit fold', () => {
  it('should map every audit event to a row with type, topic (or pattern) and outcome', () => {
    const events = [
      recorded('o1', 'audit', 'audit.publish.denied', { topic: 'a/b', transport: 'ws' }, { session: 's1', correlationId: 'c1', node: 'n1' }),
      recorded('o1', 'audit', 'audit.subscribe.denied', { pattern: 'x/#', transport: 'mqtt' }),
      recorded('o1', 'audit', 'audit.limit.hit', { limit: 'rate' }),
      recorded('o1', 'commands:devices/d1/commands', 'device.reboot', {}),
    ];
    const { rows, rejected } = foldAudit(events);
    assert.equal(rejected.length, 0);
    assert.deepEqual(rows.map((r) => [r.type, r.topic, r.outcome]), [['publish.denied', 'a/b', 'denied'], ['subscribe.denied', 'x/#', 'denied'], ['limit.hit', null, 'limited']]);
    assert.equal(rows[0].session, 's1');
    assert.equal(rows[0].correlation_id, 'c1');
    assert.equal(rows[0].node, 'n1');
    assert.equal(rows[0].global_position, events[0].globalPosition.toString());
    assert.deepEqual(JSON.parse(rows[0].data), { topic: 'a/b', transport: 'ws' });
  });

  it('should classify outcomes, with unknown types as other rather than dead letters', () => {
    assert.equal(auditOutcome('session.connected'), 'allowed');
    assert.equal(auditOutcome('session.rejected'), 'denied');
    assert.equal(auditOutcome('session.protocol_violation'), 'error');
    assert.equal(auditOutcome('something.new'), 'other');
    assert.equal(foldAudit([recorded('o', 'audit', 'audit.something.new', {})]).rows[0].outcome, 'other');
  });

  it('should reject bad shapes per event and keep the rest of the batch', () => {
    const good = recorded('o', 'audit', 'audit.publish.denied', { topic: 'a' });
    const { rows, rejected } = foldAudit([
      recorded('o', 'audit', 'audit.publish.denied', 'not-an-object'),
      recorded('o', 'audit', 'audit.publish.denied', { topic: 42 }),
      good,
    ]);
    assert.deepEqual(rows.map((r) => r.id), [good.id]);
    assert.deepEqual(rejected.map((r) => r.error), ['audit data must be a JSON object', 'data.topic must be a string']);
  });

  it('should name the UTC month of a time', () => {
    assert.equal(monthOf('2026-11-30T23:59:59.999Z'), '2026-11-01T00:00:00.000Z');
  });
});

describe('projections - sessions fold', () => {
  it('should merge connect and disconnect of one session and mark devices by role', () => {
    const c = recorded('o', 'audit', 'audit.session.connected', { transport: 'mqtt', roles: ['device'], clientId: 'cl' }, { actor: 'd7', session: 's1', node: 'n' }, '2026-11-30T10:00:00.000Z');
    const u = recorded('o', 'audit', 'audit.session.connected', { transport: 'ws', roles: ['admin'] }, { actor: 'alice', session: 's2' }, '2026-11-30T10:00:01.000Z');
    const d = recorded('o', 'audit', 'audit.session.disconnected', { transport: 'mqtt', reason: 'bye', durationMs: 5000, code: 1000 }, { actor: 'd7', session: 's1' }, '2026-11-30T10:00:05.000Z');
    const { rows, rejected } = foldSessions([c, u, d]);
    assert.equal(rejected.length, 0);
    assert.equal(rows.length, 2);
    const s1 = rows.find((r) => r.id === 's1')!;
    assert.equal(s1.device_id, 'd7');
    assert.equal(s1.client_id, 'cl');
    assert.equal(s1.connected_at, '2026-11-30T10:00:00.000Z');
    assert.equal(s1.disconnected_at, '2026-11-30T10:00:05.000Z');
    assert.equal(s1.duration_ms, 5000);
    assert.equal(s1.reason, 'bye');
    assert.equal(rows.find((r) => r.id === 's2')!.device_id, null);
  });

  it('should give the same patches however the events are cut into batches (disconnect alone knows no device)', () => {
    const c = recorded('o', 'audit', 'audit.session.connected', { transport: 'ws', roles: ['device'] }, { actor: 'd1', session: 's' });
    const d = recorded('o', 'audit', 'audit.session.disconnected', { transport: 'ws' }, { actor: 'd1', session: 's' });
    assert.equal(foldSessions([d]).rows[0].device_id, null);
    assert.equal(foldSessions([c, d]).rows[0].device_id, 'd1');
  });

  it('should reject a session event without a session id', () => {
    const { rows, rejected } = foldSessions([recorded('o', 'audit', 'audit.session.connected', { roles: ['device'] }, {})]);
    assert.equal(rows.length, 0);
    assert.match(rejected[0].error, /metadata.session/);
  });
});

describe('projections - commands fold', () => {
  it('should record every command as issued with the device of its topic', () => {
    const e = recorded('o', 'commands:devices/d9/commands', 'device.reboot', { reason: 'x' }, { actor: 'admin', idempotencyKey: 'k' });
    const f = recorded('o', 'commands:fleet/all', 'device.config', { settings: {} }, { actor: 'admin' });
    const { rows } = foldCommands([e, f, recorded('o', 'audit', 'audit.limit.hit', {})]);
    assert.deepEqual(rows.map((r) => [r.device_id, r.topic, r.status, r.idempotency_key]), [['d9', 'devices/d9/commands', 'issued', 'k'], [null, 'fleet/all', 'issued', null]]);
  });

  it('should take the device id only from devices/<id>/…', () => {
    assert.equal(deviceOfTopic('devices/d1'), 'd1');
    assert.equal(deviceOfTopic('devices'), null);
    assert.equal(deviceOfTopic('fleet/devices/d1'), null);
  });
});

describe('projections - orgs fold', () => {
  it('should give each org the span of its events', () => {
    const { spans, lifecycle, rejected } = foldOrgs([
      recorded('a', 'audit', 'audit.x', {}, {}, '2026-11-30T10:00:02.000Z'),
      recorded('a', 'audit', 'audit.x', {}, {}, '2026-11-30T10:00:01.000Z'),
      recorded('b', 'audit', 'audit.x', {}, {}, '2026-11-30T10:00:03.000Z'),
    ]);
    assert.deepEqual(spans, [
      { org_id: 'a', first_event_at: '2026-11-30T10:00:01.000Z', last_event_at: '2026-11-30T10:00:02.000Z' },
      { org_id: 'b', first_event_at: '2026-11-30T10:00:03.000Z', last_event_at: '2026-11-30T10:00:03.000Z' },
    ]);
    assert.deepEqual(lifecycle, []);
    assert.deepEqual(rejected, []);
  });

  it('should fold created, updated, suspended and resumed in log order into one patch per org', () => {
    const created = recorded('a', 'org', 'org.created', { org: 'a', status: 'active', tier: 'gold', settings: { tz: 'UTC' }, limits: { ORGHUB_LIMITS_RATE: 50 }, auditRetentionDays: 30, createdAt: '2026-11-30T09:00:00.000Z' });
    const updated = recorded('a', 'org', 'org.updated', { org: 'a', tier: 'basic', limits: { ORGHUB_LIMITS_RATE: 5 } });
    const suspended = recorded('a', 'org', 'org.suspended', { org: 'a', reason: 'unpaid' }, {}, '2026-11-30T10:00:00.000Z');
    const other = recorded('b', 'org', 'org.suspended', { org: 'b' }, {}, '2026-11-30T11:00:00.000Z');
    const { lifecycle, rejected } = foldOrgs([created, updated, suspended, other]);
    assert.deepEqual(rejected, []);
    assert.deepEqual(lifecycle.find((l) => l.org_id === 'a'), {
      org_id: 'a', position: suspended.globalPosition.toString(),
      patch: { status: 'suspended', tier: 'basic', settings: { tz: 'UTC' }, limits: { ORGHUB_LIMITS_RATE: 5 }, audit_retention_days: 30, created_at: '2026-11-30T09:00:00.000Z', suspended_at: '2026-11-30T10:00:00.000Z', suspend_reason: 'unpaid' },
    });
    assert.deepEqual(lifecycle.find((l) => l.org_id === 'b')!.patch, { status: 'suspended', suspended_at: '2026-11-30T11:00:00.000Z', suspend_reason: '' });
    const resumed = recorded('a', 'org', 'org.resumed', { org: 'a' });
    assert.deepEqual(foldOrgs([suspended, resumed]).lifecycle[0]!.patch, { status: 'active', suspended_at: null, suspend_reason: null });
    // an update names only what changed: nothing else is in the patch
    assert.deepEqual(foldOrgs([recorded('a', 'org', 'org.updated', { org: 'a', auditRetentionDays: 7 })]).lifecycle[0]!.patch, { audit_retention_days: 7 });
  });

  it('should ignore lifecycle types outside the org stream and refuse bad shapes per event', () => {
    const elsewhere = recorded('a', 'commands:devices/d/commands', 'org.suspended', { org: 'a' });
    assert.deepEqual(foldOrgs([elsewhere]).lifecycle, [], 'only the org stream carries the lifecycle');
    assert.equal(foldOrgs([elsewhere]).spans.length, 1, 'it still counts in the span');
    const good = recorded('a', 'org', 'org.updated', { org: 'a', tier: 'gold' });
    const { lifecycle, rejected } = foldOrgs([
      recorded('a', 'org', 'org.updated', { org: 'a', tier: 'Not A Tier' }),
      recorded('a', 'org', 'org.updated', { org: 'someone-else', tier: 'gold' }),
      recorded('a', 'org', 'org.created', { org: 'a', auditRetentionDays: 0 }),
      recorded('a', 'org', 'org.updated', { org: 'a', limits: { X: -1 } }),
      recorded('a', 'org', 'org.suspended', 'nope'),
      good,
    ]);
    assert.deepEqual(rejected.map((r) => r.error), ['data.tier must be a tier name', "data.org is not the event's org", 'data.auditRetentionDays must be a positive integer', 'data.limits values must be non-negative integers', 'org event data must be a JSON object']);
    assert.deepEqual(lifecycle, [{ org_id: 'a', position: good.globalPosition.toString(), patch: { tier: 'gold' } }]);
  });
});

describe('projections - retention plan', () => {
  const now = new Date('2026-11-30T12:00:00Z');
  it('should drop only months older than the longest retention and trim orgs with shorter ones', () => {
    const plan = planRetention(now, [{ org_id: 'a', days: 90 }, { org_id: 'b', days: 30 }], ['audit_log_2026_07', 'audit_log_2026_08', 'audit_log_2026_09', 'other']);
    // 90 days before 2026-11-30 is 2026-09-01T12:00Z: July and August ended before it, September did not.
    assert.deepEqual(plan.dropPartitions, ['audit_log_2026_07', 'audit_log_2026_08']);
    assert.deepEqual(plan.trims.map(([o, d]) => [o, d.toISOString()]), [['b', '2026-10-31T12:00:00.000Z']]);
  });
  it('should keep the default 90 days even when every org asks for less', () => {
    const plan = planRetention(now, [{ org_id: 'a', days: 7 }], ['audit_log_2026_10']);
    assert.deepEqual(plan.dropPartitions, []);
    assert.equal(plan.trims.length, 1);
  });
  it('should read partition bounds from names', () => {
    assert.equal(partitionEnd('audit_log_2026_12')?.toISOString(), '2027-01-01T00:00:00.000Z');
    assert.equal(partitionEnd('audit_log__rebuild_2026_12'), undefined);
  });
});

describe('projections - registry, lag and progress', () => {
  it('should select projections by name and refuse unknown ones', () => {
    assert.deepEqual(selectProjections('all').map((p) => p.name), ['orgs', 'audit_log', 'sessions', 'device_commands']);
    assert.deepEqual(selectProjections('sessions').map((p) => p.tables), [['sessions', 'devices']]);
    assert.throws(() => selectProjections('nope'), /unknown projection\(s\) nope/);
  });
  it('should mark lagging only past the threshold, and never when nothing is behind', () => {
    assert.deepEqual(evaluateLag({ behind: 0, oldestAgeMs: null }, 5), { behindSeconds: 0, lagging: false });
    assert.deepEqual(evaluateLag({ behind: 3, oldestAgeMs: 6000 }, 5), { behindSeconds: 6, lagging: true });
    assert.deepEqual(evaluateLag({ behind: 3, oldestAgeMs: 4000 }, 5), { behindSeconds: 4, lagging: false });
  });
  it('should draw a bar with rate and ETA', () => {
    assert.equal(progressLine('r', 50, 100, 1000, 10), 'r [#####-----]  50% 50/100 events 50 ev/s ETA 1s');
  });
});
