import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { foldFleet } from './fleetFold.ts';
import { recorded } from '../testEvents.ts';

describe('projections - fleet commands fold', () => {
  const id = randomUUID();
  const fleetId = randomUUID();
  const issued = recorded('o1', 'fleet:d1', 'fleet.command.issued', { commandId: id, deviceId: 'd1', type: 'lock', data: { message: 'x' }, expiresAt: '2026-12-01T00:00:00.000Z', fleetId }, { actor: 'admin' });

  it('should turn issued into a queued row of the device, with expiry and fleet id', () => {
    const { rows, rejected } = foldFleet([issued]);
    assert.equal(rejected.length, 0);
    assert.deepEqual(
      [rows[0].id, rows[0].device_id, rows[0].topic, rows[0].type, rows[0].status, rows[0].issued_by, rows[0].expires_at, rows[0].fleet_id],
      [id, 'd1', '$commands/d1', 'lock', 'queued', 'admin', '2026-12-01T00:00:00.000Z', fleetId],
    );
    assert.deepEqual(JSON.parse(rows[0].data), { message: 'x' });
  });

  it('should turn delivery, ack, expiry and cancel into forward moves, and reject bad shapes per event', () => {
    const f = foldFleet([
      issued,
      recorded('o1', 'fleet:d1', 'fleet.command.delivered', { commandId: id }),
      recorded('o1', 'fleet:d1', 'fleet.command.acked', { commandId: id, status: 'failed', details: 'no' }),
      recorded('o1', 'fleet:d2', 'fleet.command.expired', { commandId: randomUUID() }),
      recorded('o1', 'fleet:d2', 'fleet.command.cancelled', { commandId: randomUUID() }),
      recorded('o1', 'fleet:d2', 'fleet.command.acked', { commandId: randomUUID(), status: 'maybe' }),
      recorded('o1', 'fleet:d2', 'fleet.command.acked', { commandId: 'not-a-uuid', status: 'failed' }),
      recorded('o1', 'commands:devices/d1/x', 'device.reboot', {}),
    ]);
    assert.deepEqual(f.delivered.map((m) => m.status), ['delivered']);
    assert.deepEqual(f.terminal.map((m) => [m.status, m.details]), [['failed', 'no'], ['expired', null], ['cancelled', null]]);
    assert.deepEqual(f.rejected.map((r) => r.error), ['data.status must be succeeded, failed or rejected', 'data.commandId must be a UUID']);
  });
});
