import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { HubError } from '../errors.ts';
import type { CommandRequest } from '../core/commands.ts';
import type { ClientContext } from '../core/context.ts';
import type { BridgeContext } from './bridgeContext.ts';
import { DrainGate } from './drainGate.ts';
import { commandErrorReason, commandTopicOf, handleCommand, isCommandTopic } from './commandPublish.ts';

const client = {} as ClientContext;
/** A context whose CommandHandler records requests and fails with `fail` when given. */
function ctxWith(fail?: unknown): { ctx: BridgeContext; seen: CommandRequest[] } {
  const seen: CommandRequest[] = [];
  const commands = {
    async execute(_c: ClientContext, req: CommandRequest) {
      seen.push(req);
      if (fail) throw fail;
      return { eventId: 'e', position: '1' };
    },
  };
  return { ctx: { commands } as unknown as BridgeContext, seen };
}
const body = (o: unknown) => Buffer.from(JSON.stringify(o));

describe('mqtt $cmd publish', () => {
  it('commands - `$cmd/` prefix detection and target topic', () => {
    assert.equal(isCommandTopic('$cmd/devices/d1'), true);
    assert.equal(isCommandTopic('$cmd'), false);
    assert.equal(isCommandTopic('cmd/devices'), false);
    assert.equal(commandTopicOf('$cmd/devices/d1/commands'), 'devices/d1/commands');
    assert.equal(commandTopicOf('$cmd/'), undefined);
    assert.equal(commandTopicOf('$cmd/a.b'), undefined);
    assert.equal(commandTopicOf('devices/d1'), undefined);
  });

  it('commands - HubError codes map to the documented MQTT 5 reason codes', () => {
    assert.equal(commandErrorReason('forbidden'), 0x87);
    assert.equal(commandErrorReason('unavailable'), 0x80);
    assert.equal(commandErrorReason('bad_topic'), 0x90);
    assert.equal(commandErrorReason('invalid'), 0x99);
    assert.equal(commandErrorReason('unknown_command'), 0x99);
    assert.equal(commandErrorReason('conflict'), 0x83);
  });

  it('commands - a valid body reaches the CommandHandler with the org-relative topic', async () => {
    const { ctx, seen } = ctxWith();
    assert.equal(await handleCommand(ctx, client, '$cmd/devices/d1', body({ type: 'reboot', data: { a: 1 }, key: 'k1' })), 0);
    assert.deepEqual(seen, [{ type: 'reboot', topic: 'devices/d1', data: { a: 1 }, key: 'k1' }]);
  });

  it('commands - bad topic, bad body and a hub without an event store never reach the handler', async () => {
    const { ctx, seen } = ctxWith();
    assert.equal(await handleCommand(ctx, client, '$cmd/a b', body({ type: 't' })), 0x90);
    assert.equal(await handleCommand(ctx, client, '$cmd/a', Buffer.from('not json')), 0x99);
    assert.equal(await handleCommand(ctx, client, '$cmd/a', body(null)), 0x99);
    assert.equal(await handleCommand(ctx, client, '$cmd/a', body({ data: 1 })), 0x99);
    assert.equal(await handleCommand(ctx, client, '$cmd/a', body({ type: 't', key: 5 })), 0x99);
    assert.equal(seen.length, 0);
    assert.equal(await handleCommand({} as BridgeContext, client, '$cmd/a', body({ type: 't' })), 0x83);
  });

  it('commands - handler failures become reason codes; non-HubErrors propagate', async () => {
    assert.equal(await handleCommand(ctxWith(new HubError('forbidden', 'no')).ctx, client, '$cmd/a', body({ type: 't' })), 0x87);
    assert.equal(await handleCommand(ctxWith(new HubError('unavailable', 'down')).ctx, client, '$cmd/a', body({ type: 't' })), 0x80);
    await assert.rejects(handleCommand(ctxWith(new TypeError('bug')).ctx, client, '$cmd/a', body({ type: 't' })), TypeError);
  });

  it('commands - while the node drains a new command is refused 0x80 without reaching the handler; one in flight is counted until it ends', async () => {
    const { ctx, seen } = ctxWith();
    let release!: () => void;
    const gate = new DrainGate();
    const slow = { ...ctx, drain: gate, commands: { execute: (_c: ClientContext, req: CommandRequest) => (seen.push(req), new Promise((r) => (release = () => r({ eventId: 'e', position: '1' })))) } } as unknown as BridgeContext;
    // Given a command in flight
    const first = handleCommand(slow, client, '$cmd/a', body({ type: 't', key: 'k1' }));
    await Promise.resolve();
    assert.equal(gate.inFlight, 1);
    // When the node starts draining, Then a new command is refused as unavailable and not executed
    gate.close();
    assert.equal(await handleCommand(slow, client, '$cmd/a', body({ type: 't', key: 'k2' })), 0x80);
    assert.deepEqual(seen.map((r) => r.key), ['k1']);
    // And the one in flight still gets its success, after which the gate is idle
    const idle = gate.idle(Date.now() + 5000);
    release();
    assert.equal(await first, 0);
    assert.equal(await idle, true);
  });
});
