/**
 * Helpers for the MQTT integration suites: a hub child with the bridge on a free port, MQTT.js
 * clients that collect what they receive, and mosquitto_sub / mosquitto_pub run as real processes.
 */
import { spawn } from 'node:child_process';
import assert from 'node:assert/strict';
import net from 'node:net';
import { randomUUID } from 'node:crypto';
import mqttPacket, { type IConnackPacket, type Packet } from 'mqtt-packet';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { freePort, startHubProcess, type HubProcess } from '../testing/hubProcess.ts';
import type { TestIssuer } from '../testing/issuer.ts';
import { sleep } from '../testing/wsClient.ts';

export interface MqttHub {
  hub: HubProcess;
  mqttPort: number;
  tcpUrl: string;
  wsUrl: string;
}

export async function startMqttHub(issuer: TestIssuer, env: Record<string, string> = {}): Promise<MqttHub> {
  const mqttPort = await freePort();
  // A generous start deadline: on a 2-core machine shared by several suites, tsx alone can take 15 s.
  const hub = await startHubProcess({ ...issuer.env, ORGHUB_MQTT_PORT: String(mqttPort), ORGHUB_MQTT_RATE: '100000', ...env }, { timeoutMs: 60_000 });
  return { hub, mqttPort, tcpUrl: `mqtt://127.0.0.1:${mqttPort}`, wsUrl: `ws://127.0.0.1:${hub.port}/mqtt` };
}

export interface Received {
  topic: string;
  payload: Buffer;
  retain: boolean;
  qos: number;
  dup?: boolean;
  /** MQTT 5 Message Expiry Interval as received. */
  expiry?: number;
}

/** An MQTT.js client plus everything it received, in order. */
export interface Collector {
  client: MqttClient;
  /** The CONNACK that opened the connection (`sessionPresent`, MQTT 5 properties). */
  connack: IConnackPacket;
  got: Received[];
  /** Resolves once `pred` holds for `n` received messages; rejects after `ms`. */
  waitFor(n: number, pred?: (m: Received) => boolean, ms?: number): Promise<Received[]>;
}

/**
 * Connects an MQTT.js client. The `connect` and `message` listeners are attached before the
 * connection opens, so the CONNACK (`session present`) and messages a resumed session sends right
 * after it are never missed.
 */
export async function connect(url: string, token: string, opts: IClientOptions = {}): Promise<Collector> {
  const client = mqtt.connect(url, { username: 'any', password: token, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, ...opts });
  const got: Received[] = [];
  client.on('message', (topic, payload, packet) => got.push({ topic, payload, retain: packet.retain, qos: packet.qos, dup: packet.dup, expiry: packet.properties?.messageExpiryInterval }));
  const connack = await new Promise<IConnackPacket>((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
    client.once('close', () => reject(new Error('closed before CONNACK')));
  });
  client.on('error', () => {});
  return {
    client,
    connack,
    got,
    async waitFor(n, pred = () => true, ms = 5000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const hits = got.filter(pred);
        if (hits.length >= n) return hits;
        if (Date.now() > deadline) throw new Error(`expected ${n} messages, got ${hits.length}: ${JSON.stringify(got.map((m) => `${m.topic}=${m.payload.toString('hex').slice(0, 40)}`))}`);
        await sleep(20);
      }
    },
  };
}

/**
 * A barrier instead of a fixed sleep: `c` publishes a unique marker (QoS 1) on `topic`, which it
 * must be subscribed to, and this resolves once the marker came back. The hub handles a session's
 * packets in order and sends retained messages before the next packet, and one hub publishes to
 * the bus over one NATS connection: whatever that hub published to `c`'s subscriptions before the
 * marker (retained messages, wills, leaks under test) is then in `c.got`. Returns the messages
 * other than markers.
 */
export async function barrier(c: Collector, topic: string, ms = 5000): Promise<Received[]> {
  const marker = `barrier-${randomUUID()}`;
  await c.client.publishAsync(topic, marker, { qos: 1 });
  await c.waitFor(1, (m) => m.topic === topic && m.payload.toString() === marker, ms);
  return withoutMarkers(c.got);
}

/** `got` without the markers `barrier` published. */
export function withoutMarkers(got: Received[]): Received[] {
  return got.filter((m) => !m.payload.toString().startsWith('barrier-'));
}

/** Polls `cond` until it holds; false after `ms`. */
export async function until(cond: () => boolean | Promise<boolean>, ms = 5000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

export { sleep };

/** A persistent session as `GET /v1/mqtt/sessions` lists it (docs/mqtt.md). */
export interface ListedSession {
  clientId: string;
  connected: boolean;
  queued: number;
  dropped: number;
  lastActivity: string;
}

/**
 * Waits until `GET /v1/mqtt/sessions` on `httpUrl`, asked with `token`, lists `clientId` in the
 * wanted state (and with `queued` / `dropped` messages when given), and returns that entry; fails
 * the test with the last entry seen after 8 s.
 */
export async function waitListed(httpUrl: string, token: string, clientId: string, want: { connected: boolean; queued?: number; dropped?: number }): Promise<ListedSession> {
  let last: ListedSession | undefined;
  const ok = await until(async () => {
    const r = await fetch(`${httpUrl}/v1/mqtt/sessions`, { headers: { authorization: `Bearer ${token}` } });
    last = ((await r.json()) as { sessions: ListedSession[] }).sessions.find((s) => s.clientId === clientId);
    return !!last && last.connected === want.connected && (want.queued === undefined || last.queued === want.queued) && (want.dropped === undefined || last.dropped === want.dropped);
  }, 8000);
  assert.ok(ok, `session ${clientId}: wanted ${JSON.stringify(want)}, last seen ${JSON.stringify(last)}`);
  return last!;
}

/** Resolves with the CONNACK error of a refused connection (MQTT.js `code` = return/reason code). */
export async function refusedCode(url: string, token: string, protocolVersion: 4 | 5): Promise<number | undefined> {
  try {
    const c = await mqtt.connectAsync(url, { username: 'any', password: token, protocolVersion, reconnectPeriod: 0, connectTimeout: 5000 });
    await c.endAsync(true);
    return undefined;
  } catch (err) {
    return (err as { code?: number }).code;
  }
}

export interface MosquittoSub {
  /** Messages as `topic` and raw payload bytes (decoded from mosquitto_sub's hex output). */
  got: Received[];
  /** Resolves once SUBACK arrived (mosquitto_sub's debug line). */
  subscribed: Promise<void>;
  waitFor(n: number, ms?: number): Promise<Received[]>;
  exited: Promise<{ code: number | null; stderr: string; stdout: string }>;
  kill(): void;
}

/** Spawns `mosquitto_sub` with `-d` so that SUBACK can be waited for; payloads come out as hex. */
export function mosquittoSub(port: number, token: string, version: 'mqttv311' | 'mqttv5', topics: string[], extra: string[] = []): MosquittoSub {
  const args = ['-h', '127.0.0.1', '-p', String(port), '-u', 'any', '-P', token, '-V', version, '-d', '-F', 'MSG|%r|%q|%t|%x', ...topics.flatMap((t) => ['-t', t]), ...extra];
  // mosquitto_sub block-buffers a piped stdout; line buffering lets SUBACK and messages through at once.
  const child = spawn('stdbuf', ['-oL', 'mosquitto_sub', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const got: Received[] = [];
  let stdout = '';
  let stderr = '';
  let buf = '';
  let onSuback: () => void = () => {};
  const subscribed = new Promise<void>((r) => (onSuback = r));
  child.stdout.on('data', (d: Buffer) => {
    stdout += d;
    buf += d;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line.includes('received SUBACK')) onSuback();
      if (!line.startsWith('MSG|')) continue;
      const [, r, q, topic, hex] = line.split('|');
      got.push({ topic, payload: Buffer.from(hex, 'hex'), retain: r === '1', qos: Number(q) });
    }
  });
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<{ code: number | null; stderr: string; stdout: string }>((resolve) => child.once('exit', (code) => resolve({ code, stderr, stdout })));
  return {
    got,
    subscribed,
    exited,
    kill: () => child.kill('SIGKILL'),
    async waitFor(n, ms = 5000) {
      const deadline = Date.now() + ms;
      while (got.length < n) {
        if (Date.now() > deadline) throw new Error(`mosquitto_sub: expected ${n} messages, got ${got.length}; stderr: ${stderr}`);
        await sleep(20);
      }
      return got;
    },
  };
}

/** Runs `mosquitto_pub` to completion; `payload` is sent from stdin (`-s`), so any bytes work. */
export function mosquittoPub(port: number, token: string, version: 'mqttv311' | 'mqttv5', topic: string, payload: Buffer | string, extra: string[] = []): Promise<{ code: number | null; stderr: string }> {
  const args = ['-h', '127.0.0.1', '-p', String(port), '-u', 'any', '-P', token, '-V', version, '-t', topic, '-s', ...extra];
  const child = spawn('mosquitto_pub', args, { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  child.stdin.end(payload);
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stderr })));
}

/** A raw TCP MQTT client (mqtt-packet both ways) for tests that need exact packets or silence. */
export class RawClient {
  readonly packets: Packet[] = [];
  readonly closed: Promise<void>;
  private readonly parser;

  private constructor(readonly socket: net.Socket, version: 4 | 5) {
    this.parser = mqttPacket.parser({ protocolVersion: version });
    this.parser.on('packet', (p: Packet) => this.packets.push(p));
    this.parser.on('error', () => {});
    socket.on('data', (d) => this.parser.parse(d));
    socket.on('error', () => {});
    this.closed = new Promise((r) => socket.once('close', () => r()));
  }

  static async open(port: number, version: 4 | 5 = 4): Promise<RawClient> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new RawClient(socket, version);
  }

  send(p: Packet, version: 4 | 5 = 4): void {
    this.socket.write(RawClient.encode(p, version));
  }

  /** One packet's bytes (to write many at once). */
  static encode(p: Packet, version: 4 | 5 = 4): Buffer {
    return mqttPacket.generate(p, { protocolVersion: version });
  }

  async waitFor(pred: (p: Packet) => boolean, ms = 5000): Promise<Packet> {
    const deadline = Date.now() + ms;
    for (;;) {
      const hit = this.packets.find(pred);
      if (hit) return hit;
      if (Date.now() > deadline) throw new Error(`raw client: no matching packet; got ${this.packets.map((p) => p.cmd).join(',')}`);
      await sleep(10);
    }
  }
}
