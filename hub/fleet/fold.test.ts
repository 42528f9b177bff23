import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { deviceOfCommandTopic, EV, isReservedTopic } from './fleet.ts';
import { dueForRetry, effectiveStatus, foldCommands, overdueCommands, pendingCommands, statusSummary, type FoldEvent } from './fold.ts';

const T0 = Date.parse('2026-11-30T10:00:00Z');
let pos = 0;
const ev = (type: string, data: Record<string, unknown>, actor = 'hub', at = T0): FoldEvent => ({ type, data, streamPosition: pos++, recordedAt: new Date(at).toISOString(), metadata: { actor } });
const issued = (id: string, expiresAt = T0 + 60_000) => ev(EV.issued, { commandId: id, deviceId: 'd1', type: 'reboot', data: {}, expiresAt: new Date(expiresAt).toISOString() }, 'admin');

describe('fleet fold', () => {
  it('fleet fold - should follow queued → delivered → acked and keep the ack details', () => {
    const s = foldCommands([issued('c1'), ev(EV.delivered, { commandId: 'c1' }), ev(EV.acked, { commandId: 'c1', status: 'failed', details: 'no disk' })]).get('c1')!;
    assert.deepEqual([s.status, s.details, s.issuedBy, s.type], ['failed', 'no disk', 'admin', 'reboot']);
  });

  it('fleet fold - the first terminal event should win and a late delivered should change nothing', () => {
    const m = foldCommands([issued('c1'), ev(EV.cancelled, { commandId: 'c1' }), ev(EV.acked, { commandId: 'c1', status: 'succeeded' }), ev(EV.delivered, { commandId: 'c1' })]);
    assert.equal(m.get('c1')!.status, 'cancelled');
  });

  it('fleet fold - events for unknown commands and a second issued should be ignored', () => {
    const m = foldCommands([ev(EV.acked, { commandId: 'x', status: 'succeeded' }), issued('c1'), issued('c1', T0)]);
    assert.deepEqual([...m.keys()], ['c1']);
    assert.equal(m.get('c1')!.expiresAt, T0 + 60_000);
  });

  it('fleet fold - pending excludes terminal and expired commands; overdue lists those past expiry without a terminal event', () => {
    const m = foldCommands([issued('a'), issued('b', T0 + 1000), issued('c'), ev(EV.acked, { commandId: 'c', status: 'succeeded' })]);
    assert.deepEqual(pendingCommands(m.values(), T0 + 500).map((s) => s.commandId), ['a', 'b']);
    assert.deepEqual(pendingCommands(m.values(), T0 + 1000).map((s) => s.commandId), ['a']);
    assert.deepEqual(overdueCommands(m.values(), T0 + 1000).map((s) => s.commandId), ['b']);
    assert.equal(effectiveStatus(m.get('b')!, T0 + 1000), 'expired');
    assert.deepEqual(statusSummary(m.values(), T0 + 1000), { queued: 1, delivered: 0, succeeded: 1, failed: 0, rejected: 0, expired: 1, cancelled: 0 });
  });

  it('fleet fold - a command is due again only after the retry interval', () => {
    const m = foldCommands([issued('a'), issued('b')]);
    const p = pendingCommands(m.values(), T0);
    const sent = new Map([['a', T0]]);
    assert.deepEqual(dueForRetry(p, sent, T0 + 999, 1000).map((s) => s.commandId), ['b']);
    assert.deepEqual(dueForRetry(p, sent, T0 + 1000, 1000).map((s) => s.commandId), ['a', 'b']);
  });

  it('fleet topics - $commands is reserved and names exactly one device', () => {
    assert.equal(isReservedTopic('$commands/d1'), true);
    assert.equal(isReservedTopic('$commands'), true);
    assert.equal(isReservedTopic('$commandsx/d1'), false);
    assert.equal(isReservedTopic('devices/d1/commands'), false);
    assert.equal(deviceOfCommandTopic('$commands/d1'), 'd1');
    for (const t of ['$commands', '$commands/+', '$commands/#', '$commands/d1/x', 'devices/d1']) assert.equal(deviceOfCommandTopic(t), undefined, t);
  });
});
