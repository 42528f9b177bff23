import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { startHubProcess, testOrg, type HubProcess } from '../testing/hubProcess.ts';
import { TestClient } from '../testing/wsClient.ts';

/**
 * The org-wide bound on open fleet commands (ORGHUB_FLEET_MAX_OPEN = 3 here) across two real hub
 * processes sharing Redis and the event store: the fourth open command of an org is refused with
 * `limit` on either node, another org is not affected, and a command that ends frees its slot.
 */
describe('fleet - org-wide bound on open commands', () => {
  let issuer: TestIssuer;
  let node1: HubProcess;
  let node2: HubProcess;
  const clients: TestClient[] = [];

  before(async () => {
    issuer = await createTestIssuer();
    const env = { ...issuer.env, ORGHUB_FLEET_MAX_OPEN: '3', ORGHUB_FLEET_REDIS_PREFIX: `test:fleet-open:${testOrg('f')}:` };
    [node1, node2] = await Promise.all([startHubProcess(env, { timeoutMs: 45_000 }), startHubProcess(env, { timeoutMs: 45_000 })]);
  });
  after(async () => {
    for (const c of clients) await c.close();
    await Promise.all([node1?.stop(), node2?.stop()]);
  });

  const issue = async (hub: HubProcess, org: string, device: string, body: unknown = { type: 'reboot', data: { reason: 'test' }, expiresIn: 600 }) => {
    const r = await fetch(`${hub.url}/v1/devices/${device}/commands`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await issuer.token(org, 'admin-1')}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: r.status, body: (await r.json()) as any };
  };
  const bulk = async (hub: HubProcess, org: string, devices: string[]) => {
    const r = await fetch(`${hub.url}/v1/fleet/commands`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await issuer.token(org, 'admin-1')}`, 'content-type': 'application/json' },
      body: JSON.stringify({ selector: { devices }, type: 'reboot', data: { reason: 'bulk' } }),
    });
    return { status: r.status, body: (await r.json()) as any };
  };

  it('should refuse the org\'s open command past the bound with limit on any node, count other orgs apart, and free a slot when a command ends', async () => {
    const org = testOrg();
    const other = testOrg();
    const ids: string[] = [];
    for (const [hub, d] of [[node1, 'd1'], [node2, 'd2'], [node1, 'd3']] as const) {
      const r = await issue(hub, org, d);
      assert.equal(r.status, 202, JSON.stringify(r.body));
      ids.push(r.body.commandId);
    }
    // The fourth: refused on both nodes, for a device that has no command yet (the per-device bound is 100)
    for (const hub of [node1, node2]) {
      const r = await issue(hub, org, 'd4');
      assert.deepEqual([r.status, r.body.error.code], [429, 'limit']);
      assert.match(r.body.error.message, /ORGHUB_FLEET_MAX_OPEN/);
    }
    // A bulk that would pass the bound is refused whole
    const b = await bulk(node2, org, ['d5', 'd6']);
    assert.deepEqual([b.status, b.body.error.code], [429, 'limit']);
    // Another org has its own slots (positive control for the refusals above)
    for (const d of ['d1', 'd2', 'd3']) assert.equal((await issue(node2, other, d)).status, 202);

    // d1 acks its command: one slot is free again, and only one
    const device = await TestClient.connect(node2.wsUrl, await issuer.token(org, 'd1', ['device']));
    clients.push(device);
    assert.equal((await device.request({ op: 'cmd', type: 'fleet.ack', topic: '$commands/d1', data: { commandId: ids[0], status: 'succeeded' } })).op, 'ok');
    assert.equal((await issue(node1, org, 'd4')).status, 202);
    assert.equal((await issue(node1, org, 'd5')).status, 429);
    // A cancel frees one too
    const cancel = await fetch(`${node1.url}/v1/devices/d2/commands/${ids[1]}`, { method: 'DELETE', headers: { authorization: `Bearer ${await issuer.token(org, 'admin-1')}` } });
    assert.equal(cancel.status, 200);
    assert.equal((await issue(node2, org, 'd5')).status, 202);
  });

  it('should answer a keyed retry of an accepted command with the original at the bound, while a new command there is refused with limit', async () => {
    // Given an org at its bound, its third command issued with an idempotency key
    const org = testOrg();
    const keyed = { type: 'reboot', data: { reason: 'keyed' }, expiresIn: 600, key: 'retry-at-cap' };
    for (const d of ['k1', 'k2']) assert.equal((await issue(node1, org, d)).status, 202);
    const first = await issue(node1, org, 'k3', keyed);
    assert.equal(first.status, 202, JSON.stringify(first.body));
    // When a new command comes (control): refused, the org is at its bound
    const fresh = await issue(node2, org, 'k4', { ...keyed, key: 'another-key' });
    assert.deepEqual([fresh.status, fresh.body.error?.code], [429, 'limit']);
    // Then the retry, on either node, gets the original answer: same status code, same command
    for (const hub of [node1, node2]) {
      const again = await issue(hub, org, 'k3', keyed);
      assert.equal(again.status, first.status, JSON.stringify(again.body));
      assert.deepEqual([again.body.commandId, again.body.status, again.body.expiresAt, again.body.duplicate], [first.body.commandId, 'queued', first.body.expiresAt, true]);
    }
    // And the same key with other data is still a conflict, not the original and not limit
    const changed = await issue(node2, org, 'k3', { ...keyed, data: { reason: 'other' } });
    assert.deepEqual([changed.status, changed.body.error?.code], [409, 'conflict']);
    // Nothing was recorded by the retries: still at the bound
    assert.equal((await issue(node1, org, 'k5')).status, 429);
  });

  it('should free the slot of an expired command by itself', async () => {
    const org = testOrg();
    for (const d of ['e1', 'e2']) assert.equal((await issue(node1, org, d)).status, 202);
    const short = await issue(node1, org, 'e3', { type: 'reboot', data: { reason: 'short' }, expiresIn: 1 });
    assert.equal(short.status, 202);
    assert.equal((await issue(node2, org, 'e4')).status, 429);
    // Once e3's command is past its expiry its slot counts no more (deadline, not a sleep)
    const deadline = Date.now() + 10_000;
    let status = 429;
    while (status === 429 && Date.now() < deadline) {
      status = (await issue(node2, org, 'e4')).status;
      if (status === 429) await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(status, 202);
  });
});
