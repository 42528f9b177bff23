import mqtt, { type IDisconnectPacket, type MqttClient } from 'mqtt';
import type { Socket } from 'node:net';

/**
 * An MQTT.js client of a multi-node hub, as a real device runs it: it knows every node
 * (`servers`, tried in turn on reconnect), reconnects by itself, and sends keyed commands on
 * `$cmd/devices/d1/commands` at QoS 1, resending an unacknowledged one with the same key.
 */
export class MqttCommandWorker {
  readonly client: MqttClient;
  /** Keys whose PUBACK was a success: recorded, per docs/mqtt.md "Commands over MQTT". */
  readonly acked = new Set<string>();
  /** Reason codes of the DISCONNECT packets the hub sent (MQTT 5 only). */
  readonly disconnects: number[] = [];
  /** Connection closes seen (any cause). */
  closes = 0;
  retries = 0;
  private seq = 0;
  private stopped = false;
  private running?: Promise<void>;

  constructor(
    readonly name: string,
    ports: number[],
    token: string,
    readonly version: 4 | 5,
  ) {
    this.client = mqtt.connect({
      servers: ports.map((port) => ({ host: '127.0.0.1', port })),
      protocolVersion: version,
      username: 'any',
      password: token,
      reconnectPeriod: 100,
      connectTimeout: 5000,
    });
    this.client.on('error', () => {});
    this.client.on('disconnect', (p: IDisconnectPacket) => this.disconnects.push(p.reasonCode ?? 0));
    this.client.on('close', () => this.closes++);
  }

  /** The hub's MQTT port this client is connected to, or undefined while it is not. */
  get port(): number | undefined {
    if (!this.client.connected) return undefined;
    return (this.client.stream as unknown as Socket).remotePort;
  }

  start(): void {
    this.running = (async () => {
      while (!this.stopped) {
        const key = `${this.name}-${this.seq}`;
        if (!this.client.connected) {
          await pause(50);
          continue;
        }
        const body = JSON.stringify({ type: 'device.reboot', data: { reason: `m${this.seq}` }, key });
        const ok = await Promise.race([this.client.publishAsync('$cmd/devices/d1/commands', body, { qos: 1 }).then(() => true, () => false), pause(5000).then(() => false)]);
        if (ok) {
          this.acked.add(key);
          this.seq++;
        } else {
          this.retries++;
          await pause(50); // a client's backoff, then the same key again
        }
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
    await this.client.endAsync(true);
  }
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
