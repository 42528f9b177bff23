import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { testOrg } from '../testing/hubProcess.ts';
import { startTwoNodes } from '../access/testNodes.ts';
import type { MqttHub } from '../mqtt/mqttTestKit.ts';

/**
 * Limit overrides set through the platform API (`PATCH /v1/orgs/{org}` `limits`) apply on a real
 * hub: PATCHed on one node, met on the other (told through `orghub.ctl.access.org`, well before the
 * 30 s re-read), at the new rate, while another org at the same time is unaffected.
 */
const RATE = 4; // per second, per user, burst 1 s
const SECONDS = 2;

describe('limits - org directory overrides across two nodes', () => {
  let issuer: TestIssuer;
  let h1: MqttHub;
  let h2: MqttHub;
  let platform: string;

  before(async () => {
    issuer = await createTestIssuer();
    ({ nodes: [h1, h2] } = await startTwoNodes(issuer, { ORGHUB_EVENT_STORE: 'none', ORGHUB_LIMITS_PREFIX: `orghub-test-${randomUUID().slice(0, 8)}:` }));
    platform = await issuer.token(testOrg('ops'), 'operator', ['platform']);
  });
  after(async () => {
    await Promise.all([h1?.hub.stop(), h2?.hub.stop()]);
  });

  const admin = async (h: MqttHub, method: string, path: string, body: unknown) => {
    const r = await fetch(`${h.hub.url}${path}`, { method, headers: { authorization: `Bearer ${platform}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: r.status, body: (await r.json()) as any };
  };
  const publish = async (h: MqttHub, token: string) => {
    const r = await fetch(`${h.hub.url}/v1/publish`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ topic: 'o/x', data: 1 }) });
    return { status: r.status, body: (await r.json()) as any };
  };
  /** Publishes back to back for `ms` from 3 concurrent loops; counts answers by status and error code. */
  const flood = async (h: MqttHub, token: string, ms: number) => {
    const counts: Record<string, number> = {};
    const start = performance.now();
    const loop = async () => {
      while (performance.now() - start < ms) {
        const r = await publish(h, token);
        const k = r.status === 200 ? 'ok' : `${r.status} ${r.body?.error?.code}`;
        counts[k] = (counts[k] ?? 0) + 1;
      }
    };
    await Promise.all([loop(), loop(), loop()]);
    return counts;
  };

  it('limits - an org PATCHed to a lower publish rate meets rate_limited at that rate on the other node; another org is unaffected', async () => {
    const org = testOrg('slow');
    const other = testOrg('fast');
    assert.equal((await admin(h1, 'POST', '/v1/orgs', { org })).status, 201);
    assert.equal((await admin(h1, 'POST', '/v1/orgs', { org: other })).status, 201);
    const token = await issuer.token(org, 'svc');
    const otherToken = await issuer.token(other, 'svc');

    // Positive control, and node 2 now holds the org's standard limits in its cache.
    for (let i = 0; i < 8; i++) {
      const r = await publish(h2, token);
      assert.equal(r.status, 200, `standard tier: publish ${i} accepted ${JSON.stringify(r.body)}`);
    }

    const p = await admin(h1, 'PATCH', `/v1/orgs/${org}`, { limits: { ORGHUB_LIMITS_PUBLISH_USER: RATE, ORGHUB_LIMITS_BURST_SECONDS: 1 } });
    assert.equal(p.status, 200, JSON.stringify(p.body));
    assert.deepEqual(p.body.org.limits, { ORGHUB_LIMITS_PUBLISH_USER: RATE, ORGHUB_LIMITS_BURST_SECONDS: 1 });

    // Node 2 learns of the change by the control subject: poll until the first refusal (deadline well under the 30 s re-read).
    const deadline = Date.now() + 10_000;
    let refused: { status: number; body: any } | undefined;
    while (!refused && Date.now() < deadline) {
      const r = await publish(h2, token);
      if (r.status !== 200) refused = r;
    }
    assert.ok(refused, 'node 2 applied the lower rate within 10 s');
    assert.equal(refused.status, 429);
    assert.equal(refused.body.error.code, 'rate_limited');

    // At the new rate: over SECONDS s a flood gets about RATE per second (the burst was spent above).
    // Bounds are loose below (a busy machine offers fewer requests) and tight above (the limit itself).
    const [slow, fast] = await Promise.all([flood(h2, token, SECONDS * 1000), flood(h2, otherToken, SECONDS * 1000)]);
    const accepted = slow.ok ?? 0;
    const most = RATE * (SECONDS + 1) + 2;
    assert.ok(accepted >= 1 && accepted <= most, `at most about ${RATE}/s accepted over ${SECONDS} s: ${JSON.stringify(slow)}`);
    assert.ok((slow['429 rate_limited'] ?? 0) > 0, `the flood was refused with rate_limited: ${JSON.stringify(slow)}`);
    assert.deepEqual(Object.keys(slow).sort(), ['429 rate_limited', 'ok'].filter((k) => slow[k] !== undefined));
    // Another org, flooding at the same time on the same node: nothing refused, and more than the slow org could ever get.
    assert.deepEqual(Object.keys(fast), ['ok'], `other org: ${JSON.stringify(fast)}`);
    assert.ok(fast.ok! > most, `other org publishes above ${RATE}/s: ${fast.ok} in ${SECONDS} s`);
  });
});
