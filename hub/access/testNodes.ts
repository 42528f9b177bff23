import { randomBytes } from 'node:crypto';
import { freePort, startHubProcess } from '../testing/hubProcess.ts';
import type { TestIssuer } from '../testing/issuer.ts';
import type { MqttHub } from '../mqtt/mqttTestKit.ts';

/**
 * Two hub processes with the MQTT bridge on free ports and one random cluster secret, for the
 * access suites. A generous start deadline: on the shared 2-core machine a hub takes 10-20 s to be
 * ready when other suites run.
 */
export async function startTwoNodes(issuer: TestIssuer, env: Record<string, string> = {}): Promise<{ nodes: [MqttHub, MqttHub]; secret: string }> {
  const secret = randomBytes(24).toString('base64url');
  const one = async (): Promise<MqttHub> => {
    const mqttPort = await freePort();
    const hub = await startHubProcess({ ...issuer.env, ORGHUB_MQTT_PORT: String(mqttPort), ORGHUB_MQTT_RATE: '100000', ORGHUB_CLUSTER_SECRET: secret, ...env }, { timeoutMs: 90_000 });
    return { hub, mqttPort, tcpUrl: `mqtt://127.0.0.1:${mqttPort}`, wsUrl: `ws://127.0.0.1:${hub.port}/mqtt` };
  };
  const nodes = await Promise.all([one(), one()]);
  return { nodes: nodes as [MqttHub, MqttHub], secret };
}
