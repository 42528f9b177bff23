import { randomUUID } from 'node:crypto';
import { connect as mqttConnect } from '../hub/mqtt/mqttTestKit.ts';
import type { TestIssuer } from '../hub/testing/issuer.ts';
import { TestClient } from '../hub/testing/wsClient.ts';

export interface WorkloadExpect {
  /** Commands recorded (acked) per org. */
  commands: Record<string, number>;
  /** Device ids that connected per org. */
  devices: Record<string, string[]>;
}

/**
 * A mixed workload through a real hub for one org: WebSocket admin and device sessions, allowed
 * and denied publishes and subscriptions, commands (one retried with its key, one denied), HTTP
 * publish and commands, an MQTT device session with a denied publish, and a refused token.
 */
export async function driveWorkload(opts: { issuer: TestIssuer; org: string; wsUrl: string; httpUrl: string; mqttUrl?: string; rounds?: number }): Promise<{ commands: number; devices: string[] }> {
  const { issuer, org, wsUrl, httpUrl } = opts;
  const admin = await TestClient.connect(wsUrl, await issuer.token(org, 'alice', ['admin']));
  const dev = await TestClient.connect(wsUrl, await issuer.token(org, 'd-ws', ['device']));
  let commands = 0;
  for (let i = 0; i < (opts.rounds ?? 3); i++) {
    const ok = await admin.request({ op: 'pub', topic: `devices/d-ws/telemetry`, data: { i } });
    if (ok.op !== 'ok') throw new Error(`pub refused: ${JSON.stringify(ok)}`);
    await dev.request({ op: 'pub', topic: `devices/other/telemetry`, data: { i } }); // publish.denied
    await dev.request({ op: 'sub', topic: `devices/other/#` }); // subscribe.denied
    const key = randomUUID();
    for (const k of [key, key]) {
      const r = await admin.request({ op: 'cmd', type: 'device.reboot', topic: `devices/d-ws/commands`, data: { reason: `r${i}` }, key: k });
      if (r.op !== 'ok') throw new Error(`cmd refused: ${JSON.stringify(r)}`);
    }
    commands += 1; // the retry with the same key appends nothing
    // A command goes to its type's declared topics (`x-orghub-topics`: devices/+/commands).
    const r2 = await admin.request({ op: 'cmd', type: 'device.config', topic: `devices/d-cfg/commands`, data: { settings: { i } } });
    if (r2.op !== 'ok') throw new Error(`cmd refused: ${JSON.stringify(r2)}`);
    commands += 1;
    await dev.request({ op: 'cmd', type: 'device.reboot', topic: `devices/d-ws/commands`, data: {} }); // command.denied
  }
  const adminToken = await issuer.token(org, 'alice', ['admin']);
  const devToken = await issuer.token(org, 'd-http', ['device']);
  const post = (path: string, token: string, body: unknown) =>
    fetch(`${httpUrl}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if ((await post('/v1/publish', adminToken, { topic: 'devices/d-http/x', data: { a: 1 } })).status !== 200) throw new Error('http publish refused');
  if ((await post('/v1/publish', devToken, { topic: 'devices/someone/x', data: { a: 1 } })).status !== 403) throw new Error('http publish should be 403');
  if ((await post('/v1/commands', adminToken, { type: 'device.reboot', topic: 'devices/d-http/commands', data: {} })).status !== 200) throw new Error('http command refused');
  commands += 1;
  const devices = ['d-ws'];
  if (opts.mqttUrl) {
    const m = await mqttConnect(opts.mqttUrl, await issuer.token(org, 'd-mqtt', ['device']), { clientId: `c-${org}` });
    await m.client.publishAsync('devices/d-mqtt/telemetry', 'hello', { qos: 1 });
    await m.client.publishAsync('devices/not-mine/telemetry', 'x', { qos: 0 }); // publish.denied (dropped)
    await m.client.endAsync();
    devices.push('d-mqtt');
  }
  await TestClient.connect(wsUrl, 'not-a-token').catch(() => {}); // session.rejected (unauthenticated)
  await dev.close();
  await admin.close();
  return { commands, devices };
}
