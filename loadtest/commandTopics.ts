/**
 * What reserving the command topics costs a node's receive path (docs/access.md "Command topics"):
 * every message from NATS is matched against the declared command-topic patterns, and a message on
 * a command topic has its payload signature (`Orghub-Cmd-Sig`, HMAC-SHA-256) checked. Two real
 * NATS buses in one process, over the shared nats-server, alternating rounds:
 *   - peer: the bus as before (headerAuth only: `Orghub-Sig` over subject, from, ts);
 *   - reserved: the same bus with `commandTopics` (the hub's registry) as the hub now runs it.
 * Each round subscribes ONE of them to the org, a third bus publishes N messages the way the hub
 * does (with `from`, so both check `Orghub-Sig`), and the round ends when all N arrived. Workloads:
 * telemetry topics (not command topics: one pattern match extra) and command topics published by
 * the command path (`command: true`: one HMAC over the payload extra). Prints process CPU µs per
 * message (the publisher's encoding is in both columns alike) and the delta.
 *
 *   node --import tsx loadtest/commandTopics.ts [--n 50000] [--rounds 3] [--payload 200]
 */
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { createNatsBus } from '../hub/bus/natsBus.ts';
import { createHeaderAuth } from '../hub/bus/headerAuth.ts';
import type { Bus } from '../hub/bus/bus.ts';
import { CommandRegistry } from '../hub/commands/registry.ts';
import { createLogger } from '../hub/log.ts';
import { printTable } from './lib/report.ts';
import { fixed, median } from './lib/stats.ts';

const { values } = parseArgs({ options: { n: { type: 'string', default: '50000' }, rounds: { type: 'string', default: '3' }, payload: { type: 'string', default: '200' } } });
const N = Number(values.n);
const ROUNDS = Number(values.rounds);
const PAYLOAD = Number(values.payload);
if (![N, ROUNDS, PAYLOAD].every((x) => Number.isInteger(x) && x > 0)) throw new Error('--n, --rounds and --payload must be positive integers');

const servers = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const log = createLogger('warn');
const auth = createHeaderAuth('b'.repeat(32));
const registry = new CommandRegistry();
const peer = createNatsBus({ servers, name: 'bench peer', log, headerAuth: auth });
const reserved = createNatsBus({ servers, name: 'bench reserved', log, headerAuth: auth, commandTopics: (t) => registry.topics.reserves(t) });
const pub = createNatsBus({ servers, name: 'bench publisher', log, headerAuth: auth });
await Promise.all([peer.ready, reserved.ready, pub.ready]);

const payload = Buffer.from(JSON.stringify({ commandId: '01a22d08-7713-7188-8c8e-4bb56efe0ff5', type: 'device.reboot', data: { reason: 'x'.repeat(Math.max(0, PAYLOAD - 120)) }, issuedBy: 'alice', position: '123456' }));

/** One round: `bus` alone subscribed to a fresh org; N messages published; CPU µs per message. */
async function round(bus: Bus, kind: 'telemetry' | 'commands'): Promise<number> {
  const org = `bench-${randomBytes(4).toString('hex')}`;
  let got = 0;
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  const off = bus.subscribeOrg(org, () => {
    if (++got === N) done();
  });
  await bus.flush();
  await new Promise((r) => setTimeout(r, 50)); // the SUB reached the server
  const c0 = process.cpuUsage();
  for (let i = 0; i < N; i++) {
    pub.publish(org, `devices/d${i % 100}/${kind}`, payload, { contentType: 'json', from: 'alice', command: kind === 'commands' });
    if (i % 1000 === 999) await pub.flush(); // bounded outbound buffer, as a node publishing steadily
  }
  await pub.flush();
  const timeout = setTimeout(() => done(), 30_000);
  await all;
  clearTimeout(timeout);
  const cpu = process.cpuUsage(c0);
  off();
  if (got !== N) throw new Error(`${kind}: ${got} of ${N} arrived (a reserved bus drops only unsigned command messages)`);
  return (cpu.user + cpu.system) / N;
}

// warm-up: both paths compiled before anything is timed
for (const bus of [peer, reserved]) for (const kind of ['telemetry', 'commands'] as const) await round(bus, kind);

const results: Record<string, number[]> = {};
for (let r = 0; r < ROUNDS; r++) {
  for (const kind of ['telemetry', 'commands'] as const) {
    for (const [name, bus] of r % 2 === 0 ? ([['peer', peer], ['reserved', reserved]] as const) : ([['reserved', reserved], ['peer', peer]] as const)) {
      (results[`${kind}/${name}`] ??= []).push(await round(bus, kind));
    }
  }
}

process.stdout.write(`\nReceive path of one node, ${N} messages of ${payload.length} bytes per round, ${ROUNDS} alternating rounds (median), one process with its publisher\n\n`);
const rows = (['telemetry', 'commands'] as const).map((kind) => {
  const p = median(results[`${kind}/peer`]!);
  const x = median(results[`${kind}/reserved`]!);
  return [kind === 'telemetry' ? 'devices/<d>/telemetry (not a command topic)' : 'devices/<d>/commands (signed commands)', fixed(p, 2), fixed(x, 2), fixed(x - p, 2), `x${fixed(x / p, 2)}`];
});
printTable(['messages on', 'peer CPU µs/msg', 'reserved CPU µs/msg', 'delta µs', 'ratio'], rows);
await Promise.all([peer.close(), reserved.close(), pub.close()]);
