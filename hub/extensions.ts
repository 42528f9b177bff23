import type { HubExtension } from './server.ts';
import { createMqttBridge } from './mqtt/mqttBridge.ts';

/**
 * The extensions `hub/main.ts` starts. Add new ones HERE rather than in main.ts: the OpenAPI
 * coverage test (docs/openapi.test.ts) starts a hub with this same list and checks that every
 * route they mount is described in docs/openapi.yaml.
 */
export function hubExtensions(): HubExtension[] {
  return [createMqttBridge()];
}
