import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CommandTopics, patternProblem } from './commandTopics.ts';
import { CommandRegistry } from './registry.ts';

/** A registry over a temporary schemas folder holding `schemas` (type → extra schema fields). */
function registryOf(schemas: Record<string, Record<string, unknown>>): CommandRegistry {
  const dir = mkdtempSync(join(tmpdir(), 'orghub-cmd-'));
  for (const [type, extra] of Object.entries(schemas)) writeFileSync(join(dir, `${type}.schema.json`), JSON.stringify({ title: type, type: 'object', ...extra }));
  return new CommandRegistry(pathToFileURL(`${dir}/`));
}

describe('command topics', () => {
  it('registry - device.reboot and device.config are delivered on devices/+/commands; fleet.ack declares none', () => {
    const r = new CommandRegistry();
    assert.deepEqual(r.topics.of('device.reboot'), ['devices/+/commands']);
    assert.deepEqual(r.topics.of('device.config'), ['devices/+/commands']);
    assert.deepEqual(r.topics.of('fleet.ack'), []);
    assert.deepEqual(r.topics.patterns, ['devices/+/commands']);
    // the keyword is an annotation: it does not constrain data
    assert.equal(r.check('device.reboot', { reason: 'x' }), undefined);
    assert.match(r.check('device.reboot', { force: true })!, /additional properties/);
  });

  it('allows / reserves - one segment for +, exact elsewhere; any declared type reserves its topics', () => {
    const t = new CommandTopics(new Map([['a', ['devices/+/commands']], ['b', ['ops/#', 'devices/+/commands']]]));
    assert.deepEqual(t.patterns, ['devices/+/commands', 'ops/#']);
    assert.equal(t.allows('a', 'devices/d1/commands'), true);
    for (const topic of ['devices/d1/config', 'devices/d1/x/commands', 'devices/commands', 'devices/d1/commands/x', 'ops/x']) assert.equal(t.allows('a', topic), false, topic);
    assert.equal(t.allows('b', 'ops/x/y'), true);
    assert.equal(t.allows('unknown', 'devices/d1/commands'), false);
    assert.equal(t.reserves('devices/d1/commands'), true);
    assert.equal(t.reserves('ops/deploy'), true);
    assert.equal(t.reserves('ops'), false, '# needs one more segment');
    assert.equal(t.reserves('devices/d1/telemetry'), false);
    assert.equal(new CommandTopics(new Map()).reserves('devices/d1/commands'), false);
  });

  it('patternProblem - a declared pattern is valid, starts with a literal and is no $ topic', () => {
    assert.equal(patternProblem('devices/+/commands'), undefined);
    assert.equal(patternProblem('ops/#'), undefined);
    assert.match(patternProblem('#')!, /starts with a wildcard/);
    assert.match(patternProblem('+/commands')!, /starts with a wildcard/);
    assert.match(patternProblem('$commands/+')!, /system topic/);
    assert.match(patternProblem('devices/#/x')!, /not a valid topic pattern/);
    assert.match(patternProblem(42)!, /not a valid topic pattern/);
  });

  it('registry - a malformed x-orghub-topics refuses to load, naming the file', () => {
    assert.deepEqual(registryOf({ 'x.ok': { 'x-orghub-topics': ['x/+/c'] } }).topics.of('x.ok'), ['x/+/c']);
    assert.throws(() => registryOf({ 'x.bad': { 'x-orghub-topics': 'x/+/c' } }), /must be array/);
    assert.throws(() => registryOf({ 'x.bad': { 'x-orghub-topics': [] } }), /must NOT have fewer than 1 items/);
    assert.throws(() => registryOf({ 'x.bad': { 'x-orghub-topics': ['#'] } }), /x\.bad\.schema\.json: x-orghub-topics: "#" starts with a wildcard/);
    assert.throws(() => registryOf({ 'x.bad': { 'x-orghub-topics': ['a b'] } }), /not a valid topic pattern/);
    // strict mode still refuses unknown keywords
    assert.throws(() => registryOf({ 'x.bad': { 'x-other': 1 } }), /unknown keyword/);
  });
});
