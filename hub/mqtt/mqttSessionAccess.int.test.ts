import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { IDisconnectPacket } from 'mqtt-packet';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { testOrg } from '../testing/hubProcess.ts';
import { connect, refusedCode, startMqttHub, until, type Collector, type MqttHub } from './mqttTestKit.ts';

/**
 * Persistent sessions meet hub/access and hub/limits (the merge of issues 9, 10 and 12): a revoked
 * session is ended, not parked; connection slots are given back when a session parks and taken
 * again at resume; the session key includes the sub. Real hub, Redis, NATS and MQTT clients.
 */
describe('mqtt persistent sessions with access and limits', () => {
  let issuer: TestIssuer;
  let h: MqttHub;
  const capOrg = testOrg('cap');
  const open: Collector[] = [];
  const persistent = { protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 60 } };

  const client = async (org: string, sub: string, opts: Parameters<typeof connect>[2] = {}, extra?: Record<string, unknown>) => {
    const c = await connect(h.tcpUrl, await issuer.token(org, sub, undefined, extra), opts);
    open.push(c);
    return c;
  };
  /** Queued messages of `clientId` as the inspection endpoint lists them, once it says the session is offline. */
  const queued = async (org: string, clientId: string, n: number) =>
    until(async () => {
      const r = await fetch(`${h.hub.url}/v1/mqtt/sessions`, { headers: { authorization: `Bearer ${await issuer.token(org, 'inspector', ['admin'])}` } });
      const body = (await r.json()) as { sessions: { clientId: string; connected: boolean; queued: number }[] };
      return body.sessions.some((s) => s.clientId === clientId && !s.connected && s.queued === n);
    }, 10_000);

  before(async () => {
    issuer = await createTestIssuer();
    h = await startMqttHub(issuer, { ORGHUB_MQTT_SESSION_EXPIRY: '60', ORGHUB_LIMITS_ORGS: JSON.stringify({ [capOrg]: { connections: { user: 1 } } }) });
  });
  after(async () => {
    for (const c of open) c.client.end(true);
    await h?.hub.stop();
  });

  it('revocation - a revoked persistent session gets 0x98 and is discarded, not parked; an unrevoked one of the same org keeps its queue', async () => {
    const org = testOrg();
    const victim = await client(org, 'mallory', { ...persistent, clientId: 'dev-v' }, { jti: 'j-revoked' });
    const bystander = await client(org, 'bob', { ...persistent, clientId: 'dev-b' });
    await victim.client.subscribeAsync('q/#', { qos: 1 });
    await bystander.client.subscribeAsync('q/#', { qos: 1 });
    let reason: number | undefined;
    victim.client.on('disconnect', (p: IDisconnectPacket) => (reason = p.reasonCode));

    const r = await fetch(`${h.hub.url}/v1/revocations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${await issuer.token(org, 'admin-1', ['admin'])}` },
      body: JSON.stringify({ jti: 'j-revoked' }),
    });
    assert.equal(r.status, 200);
    assert.ok(await until(() => reason !== undefined), 'the revoked session was disconnected');
    assert.equal(reason, 0x98);
    // Positive control: the bystander parks normally and queues what it misses.
    await bystander.client.endAsync();
    const pub = await client(org, 'pub');
    await pub.client.publishAsync('q/1', 'one', { qos: 1 });
    assert.ok(await queued(org, 'dev-b', 1), 'the bystander session queued the message');

    // The revoked token is refused at CONNECT; a fresh token of the same sub finds no session.
    assert.equal(await refusedCode(h.tcpUrl, await issuer.token(org, 'mallory', undefined, { jti: 'j-revoked' }), 5), 0x87);
    const again = await client(org, 'mallory', { ...persistent, clientId: 'dev-v' }, { jti: 'j-fresh' });
    assert.equal(again.connack.sessionPresent, false, 'the revoked session was not kept for resumption');
    const back = await client(org, 'bob', { ...persistent, clientId: 'dev-b' });
    assert.equal(back.connack.sessionPresent, true);
    const got = await back.waitFor(1);
    assert.deepEqual(got.map((m) => m.payload.toString()), ['one']);
    assert.equal(again.got.length, 0, 'nothing queued reached the fresh connection of the revoked session');
  });

  it('connection caps - a parked session holds no connection slot: the user at its cap of 1 resumes, and a second live connection is refused 0x97', async () => {
    const first = await client(capOrg, 'u', { ...persistent, clientId: 'cap-1' });
    await first.client.subscribeAsync('c/#', { qos: 1 });
    // The cap holds while connected (positive control for the refusal below).
    assert.equal(await refusedCode(h.tcpUrl, await issuer.token(capOrg, 'u'), 5), 0x97);
    await first.client.endAsync();
    const pub = await client(capOrg, 'pub');
    await pub.client.publishAsync('c/1', 'one', { qos: 1 });
    assert.ok(await queued(capOrg, 'cap-1', 1));
    const back = await client(capOrg, 'u', { ...persistent, clientId: 'cap-1' });
    assert.equal(back.connack.sessionPresent, true, 'resumed under the cap: the slot was given back when it parked');
    assert.deepEqual((await back.waitFor(1)).map((m) => m.payload.toString()), ['one']);
    assert.equal(await refusedCode(h.tcpUrl, await issuer.token(capOrg, 'u'), 5), 0x97, 'the resumed connection holds the slot again');
  });

  it('session key - the same client id under another sub of the same org is another session', async () => {
    const org = testOrg();
    const a = await client(org, 'alice', { ...persistent, clientId: 'shared-id' });
    await a.client.subscribeAsync('s/#', { qos: 1 });
    await a.client.endAsync();
    const pub = await client(org, 'pub');
    await pub.client.publishAsync('s/1', 'for-alice', { qos: 1 });
    assert.ok(await queued(org, 'shared-id', 1));
    const other = await client(org, 'eve', { ...persistent, clientId: 'shared-id' });
    assert.equal(other.connack.sessionPresent, false, "another principal does not resume alice's session");
    other.client.end(true);
    const back = await client(org, 'alice', { ...persistent, clientId: 'shared-id' });
    assert.equal(back.connack.sessionPresent, true, 'alice still finds hers');
    assert.deepEqual((await back.waitFor(1)).map((m) => m.payload.toString()), ['for-alice']);
    assert.equal(other.got.length, 0);
  });
});
