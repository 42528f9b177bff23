import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type WebSocket from 'ws';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { startHubProcess, testOrg, type HubProcess } from '../testing/hubProcess.ts';
import { openWs, pacedCommands, startFlood } from '../testing/flood.ts';
import { percentiles } from '../../loadtest/lib/stats.ts';

/**
 * Tenant fairness (issue 9), against a real hub process, real Postgres and real tokens: org B's
 * command ack p99 while org A floods commands, and while someone floods the unauthenticated
 * `/ready`, each compared with B alone in the same run (alone phases before and after the flood,
 * pooled, so drifting machine load cancels out). The floods run in a child process so their
 * client CPU does not sit on the event loop that times B's acks.
 *
 * This 2-core machine is shared with other builds, so the asserted bounds are looser than the
 * targets (fairness <= 2x, /ready <= 1.2x); `npm run bench:fairness` measures the real ratios
 * with more samples and docs/benchmarks.md records them.
 */
const RATE = 150; // B's commands per second
const N = 360; // per phase

describe('fairness', () => {
  let issuer: TestIssuer;
  let hub: HubProcess;
  let b: WebSocket;
  let phase = 0;

  const bRun = async (label: string) => {
    const r = await pacedCommands(b, N, RATE, 100_000 * ++phase, `${label}-${phase}`);
    assert.deepEqual(r.errors, [], `${label}: B's commands all acked`);
    return r.latencies;
  };
  const p99 = (xs: number[]) => percentiles(xs, [99])[0];
  const metric = async (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(await (await fetch(`${hub.url}/metrics`)).text())?.[1]);

  before(async () => {
    issuer = await createTestIssuer();
    hub = await startHubProcess({ ...issuer.env }, { timeoutMs: 40_000 });
    b = await openWs(hub.wsUrl, await issuer.token(testOrg('fair-b'), 'admin-b', ['admin']));
    await pacedCommands(b, 100, 200, 1, 'warmup'); // connections, JIT
  });
  after(async () => {
    b?.terminate();
    await hub?.stop();
  });

  it('fairness - org B\'s ack p99 while org A floods commands stays within a bound of B alone', async () => {
    const alone1 = await bRun('alone');
    const flood = startFlood({ mode: 'cmd', url: hub.wsUrl, token: await issuer.token(testOrg('fair-a'), 'admin-a', ['admin']), conns: 4, inflight: 64 });
    await flood.started;
    await new Promise((r) => setTimeout(r, 300));
    const during = await bRun('flood');
    const a = await flood.stop();
    const alone2 = await bRun('alone');
    const base = p99([...alone1, ...alone2]);
    const ratio = p99(during) / base;
    console.log(`# fairness: B p99 alone ${base.toFixed(1)} ms, under A's flood ${p99(during).toFixed(1)} ms (x${ratio.toFixed(2)}); A acked ${a.ok} in ${a.seconds.toFixed(1)} s, errors ${JSON.stringify(a.errors)}`);
    // the flood really flooded: A got many times B's commands through in the same time
    assert.ok(a.ok > 5 * N, `A acked only ${a.ok}`);
    assert.ok(ratio <= 3, `B's p99 under A's flood is x${ratio.toFixed(2)} of alone (target 2, test bound 3)`);
  });

  it('fairness - a flood of unauthenticated /ready does not raise org B\'s ack p99, and runs the checks about once a second', async () => {
    const checks0 = await metric('orghub_ready_checks_total');
    const requests0 = await metric('orghub_ready_requests_total');
    const alone1 = await bRun('alone');
    const t0 = Date.now();
    const flood = startFlood({ mode: 'ready', url: hub.url, conns: 16, rate: 2000 });
    await flood.started;
    const during = await bRun('ready');
    const r = await flood.stop();
    const seconds = (Date.now() - t0) / 1000;
    const alone2 = await bRun('alone');
    const base = p99([...alone1, ...alone2]);
    const ratio = p99(during) / base;
    const checks = (await metric('orghub_ready_checks_total')) - checks0;
    const requests = (await metric('orghub_ready_requests_total')) - requests0;
    console.log(`# ready flood: B p99 alone ${base.toFixed(1)} ms, under /ready flood ${p99(during).toFixed(1)} ms (x${ratio.toFixed(2)}); ${r.ok} /ready answered 200 (${requests} requests), checks run ${checks} in ${seconds.toFixed(1)} s`);
    // the flood was real (positive control), and it cost about one check per second, not one per request
    assert.ok(r.ok > 1000, `only ${r.ok} /ready answered`);
    assert.ok(checks <= Math.ceil(seconds) + 3, `${checks} checks ran for ${requests} requests in ${seconds.toFixed(1)} s`);
    assert.ok(ratio <= 1.6, `B's p99 under a /ready flood is x${ratio.toFixed(2)} of alone (target 1.2, test bound 1.6)`);
  });
});
