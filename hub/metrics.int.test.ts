import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createTestIssuer, type TestIssuer } from './testing/issuer.ts';
import { freePort, startHubProcess, testOrg, type HubProcess } from './testing/hubProcess.ts';
import { TestClient } from './testing/wsClient.ts';
import { waitUntil } from './testing/until.ts';

const OPERATIONS_MD = fileURLToPath(new URL('../docs/operations.md', import.meta.url));

/** Metric families of a Prometheus text exposition: name → type. */
function families(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) out.set(m[1], m[2]);
  return out;
}

/** The value of one sample line, e.g. `name{org="x"}`; undefined when absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/**
 * Scrapes a real hub (Postgres event store, MQTT bridge on, real NATS): every exposed name must be
 * under `orghub_` and listed in docs/operations.md, so a metric added on any branch fails here until
 * it is documented.
 */
describe('metrics', () => {
  let issuer: TestIssuer;
  let hub: HubProcess;
  const clients: TestClient[] = [];
  const listed = testOrg('metrics-listed');
  const unlisted = testOrg('metrics-unlisted');
  const scrape = async () => (await fetch(`${hub.url}/metrics`)).text();

  before(async () => {
    issuer = await createTestIssuer();
    hub = await startHubProcess(
      { ...issuer.env, ORGHUB_MQTT_PORT: String(await freePort()), ORGHUB_METRICS_ORGS: `${listed},another-org` },
      { timeoutMs: 45_000 },
    );
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await hub?.stop();
  });

  it('metrics - publish-to-deliver latency is labelled by allow-listed org, every other org is _other', async () => {
    for (const org of [listed, unlisted]) {
      const c = await TestClient.connect(hub.wsUrl, await issuer.token(org, 'watcher'));
      clients.push(c);
      assert.equal((await c.request({ op: 'sub', topic: 'm/+' })).op, 'ok');
      assert.equal((await c.request({ op: 'pub', topic: 'm/1', data: { n: 1 } })).op, 'ok');
      await c.waitFor((f) => f.op === 'msg' && f.topic === 'm/1');
    }
    const text = await waitUntil('deliver latency for both orgs', async () => {
      const t = await scrape();
      const a = sample(t, `orghub_deliver_latency_seconds_count{org="${listed}"}`) ?? 0;
      const o = sample(t, 'orghub_deliver_latency_seconds_count{org="_other"}') ?? 0;
      return a >= 1 && o >= 1 ? t : undefined;
    });
    // Positive control above (the listed org has its own series); the unlisted org has none.
    assert.ok(!text.includes(unlisted), `an org outside ORGHUB_METRICS_ORGS got its own series:\n${text}`);
    assert.equal(sample(text, `orghub_deliver_latency_seconds_bucket{org="${listed}",le="+Inf"}`), sample(text, `orghub_deliver_latency_seconds_count{org="${listed}"}`));
    assert.match(text, /# TYPE orghub_deliver_latency_seconds histogram/);
  });

  it('metrics - a recorded command shows in the append latency histogram', async () => {
    const before = sample(await scrape(), 'orghub_eventstore_append_latency_seconds_count') ?? 0;
    const admin = await TestClient.connect(hub.wsUrl, await issuer.token(listed, 'admin'));
    clients.push(admin);
    const r = await admin.request({ op: 'cmd', type: 'device.reboot', topic: 'devices/d1/commands', data: {}, key: `k-${Date.now()}` });
    assert.equal(r.op, 'ok', JSON.stringify(r));
    await waitUntil('append latency count to grow', async () => ((sample(await scrape(), 'orghub_eventstore_append_latency_seconds_count') ?? 0) > before ? true : undefined));
    const text = await scrape();
    assert.ok((sample(text, 'orghub_eventstore_append_latency_seconds_sum') ?? 0) > 0);
    assert.match(text, /# TYPE orghub_eventstore_append_latency_seconds histogram/);
  });

  it('metrics - every exposed name is under orghub_ (no doubled prefix) and listed in docs/operations.md', async () => {
    const fams = families(await scrape());
    const names = [...fams.keys()];
    // Positive controls: the hub's own, the event store's, the MQTT bridge's and Node's process metrics.
    for (const n of ['orghub_ws_connections', 'orghub_eventstore_appends_total', 'orghub_mqtt_sessions', 'orghub_process_cpu_user_seconds_total', 'orghub_nodejs_eventloop_lag_seconds']) {
      assert.ok(names.includes(n), `${n} missing from /metrics; got ${names.join(', ')}`);
    }
    const outside = names.filter((n) => !n.startsWith('orghub_'));
    assert.deepEqual(outside, [], `metric names outside orghub_: ${outside.join(', ')}`);
    const doubled = names.filter((n) => /^orghub_(\w+_)?orghub_|^orghub_process_process_|^orghub_nodejs_nodejs_/.test(n));
    assert.deepEqual(doubled, [], `doubled prefixes: ${doubled.join(', ')}`);
    const doc = readFileSync(OPERATIONS_MD, 'utf8');
    const undocumented = names.filter((n) => !doc.includes(`\`${n}\``));
    assert.deepEqual(
      undocumented,
      [],
      `these metrics are exposed but not listed in docs/operations.md; add a row for each to its "Metrics" table ` +
        `(| \`name\` | type | meaning |):\n${undocumented.map((n) => `  | \`${n}\` | ${fams.get(n)} | … |`).join('\n')}`,
    );
  });
});
