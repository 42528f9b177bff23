/**
 * The floor peer of bench:mqtt-sessions: a minimal MQTT 3.1.1 server in Node.js that does what a
 * persistent session in shared storage must do at the least, and nothing more.
 *
 * - CONNECT with clean session 0: one Redis script claims the session (its record marked owned,
 *   the queue read and deleted) and answers whether it existed; CONNACK and the whole queue leave
 *   in one socket write (unless FLOOR_WINDOW or FLOOR_WRITES, below), each message a QoS 1 PUBLISH
 *   with its own packet id.
 * - SUBSCRIBE: the filter is stored in the session's record and indexed in memory (exact topics
 *   only, which is all the bench uses).
 * - PUBLISH QoS 1: for every offline session subscribed to the topic, the encoded PUBLISH is
 *   appended to its Redis list (auto-pipelined), then PUBACK.
 * - PUBACK: counted. Close: the record is marked offline.
 *
 * No token, no ACL, no connection caps, no audit, no takeover notice, no presence, no NATS, no queue
 * bound, no expiry: the gap between this and the hub is what those cost. `FLOOR_STORE=memory` keeps the
 * queues in this process instead of Redis (what the shared storage costs). Packets are framed by
 * hand; a malformed one closes the connection. Not a server for anything but this bench.
 *
 *   PORT=9003 REDIS_URL=redis://127.0.0.1:6379 FLOOR_STORE=redis|memory [FLOOR_WINDOW=0] [FLOOR_WRITES=turn|each] [FLOOR_SPIN_US=0] node --import tsx loadtest/peers/mqttSessionFloor.ts
 */
import net from 'node:net';
import { Redis } from 'ioredis';

const port = Number(process.env.PORT ?? 9003);
const memory = process.env.FLOOR_STORE === 'memory';
const redis = memory ? undefined : new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { enableAutoPipelining: true });
const PREFIX = `floor:${process.pid}:`;
/** Unacknowledged QoS 1 messages per connection (FLOOR_WINDOW; 0 = the whole queue at once, as the hub's default window of 100 does here). */
const WINDOW = Number(process.env.FLOOR_WINDOW ?? 0);
/** FLOOR_WRITES=each: one socket write per packet (as Mosquitto sends), instead of one per turn. */
const EACH = process.env.FLOOR_WRITES === 'each';
/**
 * FLOOR_SPIN_US: keep the event loop polling (setImmediate, so libuv polls without sleeping) for this
 * long after each read. A sleeping server is woken by the next write to it, and on loopback that
 * wake-up is paid by the writer (here the bench's generator); spinning trades server CPU for fewer
 * wake-ups. Not something a production server should do: it is here to measure that cost.
 */
const SPIN_NS = BigInt(Math.round(Number(process.env.FLOOR_SPIN_US ?? 0) * 1000));
let lastRead = 0n;
let spinning = false;
function spin(): void {
  if (process.hrtime.bigint() - lastRead > SPIN_NS) spinning = false;
  else setImmediate(spin);
}
function readNow(): void {
  if (SPIN_NS === 0n) return;
  lastRead = process.hrtime.bigint();
  if (spinning) return;
  spinning = true;
  setImmediate(spin);
}

/** KEYS record, queue. ARGV owner. Returns {existed, the queue's entries concatenated}. */
const CLAIM_LUA = `
local present = redis.call('EXISTS', KEYS[1])
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
local q = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
return {present, table.concat(q)}`;
redis?.defineCommand('floorClaim', { numberOfKeys: 2, lua: CLAIM_LUA });
const claimScript = redis as unknown as { floorClaimBuffer(rec: string, queue: string, owner: string): Promise<[number, Buffer]> };

interface Session {
  id: string;
  subs: Set<string>;
  /** The live connection, or undefined while offline. */
  conn?: Conn;
  /** FLOOR_STORE=memory: the offline queue (encoded PUBLISH packets). */
  queue: Buffer[];
}

const sessions = new Map<string, Session>();
/** Exact topic → sessions subscribed. */
const byTopic = new Map<string, Set<Session>>();

const CONNACK = [Buffer.from([0x20, 2, 0, 0]), Buffer.from([0x20, 2, 1, 0])];

/** The packet at `i`: where its body starts and where it ends; undefined while incomplete. */
function frame(b: Buffer, i: number): { body: number; end: number } | undefined {
  let len = 0;
  let mul = 1;
  let j = i + 1;
  let c: number;
  do {
    if (j >= b.length) return undefined;
    c = b[j++];
    len += (c & 127) * mul;
    mul *= 128;
  } while (c & 128);
  return j + len > b.length ? undefined : { body: j, end: j + len };
}

/** Concatenated QoS 1 PUBLISH packets as views, each with a fresh packet id written in (in place). */
function numberPackets(b: Buffer, next: () => number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0, f = frame(b, 0); f; i = f.end, f = frame(b, i)) {
    b.writeUInt16BE(next(), f.body + 2 + b.readUInt16BE(f.body));
    out.push(b.subarray(i, f.end));
  }
  return out;
}

class Conn {
  private buf: Buffer = Buffer.alloc(0);
  private session?: Session;
  private nextId = 0;
  /** Queued messages past the window (FLOOR_WINDOW), sent as PUBACKs come in. */
  private rest: Buffer[] = [];
  private acks = 0;

  constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => {
      readNow();
      this.read(d);
    });
    socket.on('error', () => {});
    socket.on('close', () => this.closed());
  }

  readonly id = (): number => (this.nextId = (this.nextId % 65535) + 1);

  private read(d: Buffer): void {
    const b = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    let i = 0;
    for (let f = frame(b, 0); f; i = f.end, f = frame(b, i)) this.packet(b[i] >> 4, b[i] & 15, b.subarray(f.body, f.end));
    this.buf = i < b.length ? Buffer.from(b.subarray(i)) : Buffer.alloc(0);
    if (this.acks > 0 && this.rest.length > 0) {
      const next = this.rest.splice(0, this.acks);
      if (EACH) for (const p of next) this.socket.write(p);
      else this.socket.write(next.length === 1 ? next[0] : Buffer.concat(next));
    }
    this.acks = 0;
  }

  private packet(type: number, flags: number, body: Buffer): void {
    switch (type) {
      case 1: return void this.connect(body).catch(() => this.socket.destroy());
      case 3: return void this.publish(flags, body).catch(() => this.socket.destroy());
      case 4: return void this.acks++; // PUBACK: one more may go (FLOOR_WINDOW)
      case 8: return this.subscribe(body);
      case 12: return void this.socket.write(Buffer.from([0xd0, 0]));
      case 14: return void this.socket.end();
      default: this.socket.destroy();
    }
  }

  private async connect(b: Buffer): Promise<void> {
    const nameLen = b.readUInt16BE(0);
    const flags = b[2 + nameLen + 1];
    const idLen = b.readUInt16BE(2 + nameLen + 4);
    const id = b.toString('utf8', 2 + nameLen + 6, 2 + nameLen + 6 + idLen);
    let s = sessions.get(id);
    const existed = s !== undefined;
    if (!s) sessions.set(id, (s = { id, subs: new Set(), queue: [] }));
    s.conn = this;
    this.session = s;
    if (flags & 0x02) throw new Error('the floor serves persistent sessions only');
    if (memory) {
      const q = Buffer.concat(s.queue);
      s.queue = [];
      return this.resumed(existed, q);
    }
    const [present, q] = await claimScript.floorClaimBuffer(`${PREFIX}s:${id}`, `${PREFIX}q:${id}`, 'live');
    this.resumed(present === 1, q);
  }

  /** CONNACK and the queue (up to the window; the rest as PUBACKs come in), in one write unless FLOOR_WRITES=each. */
  private resumed(present: boolean, q: Buffer): void {
    let all = numberPackets(q, this.id);
    if (WINDOW > 0 && all.length > WINDOW) {
      this.rest = all.slice(WINDOW);
      all = all.slice(0, WINDOW);
      q = q.subarray(0, this.rest[0].byteOffset - q.byteOffset);
    }
    if (EACH) {
      this.socket.write(CONNACK[present ? 1 : 0]);
      for (const p of all) this.socket.write(p);
      return;
    }
    this.socket.write(Buffer.concat([CONNACK[present ? 1 : 0], q]));
  }

  private subscribe(b: Buffer): void {
    const pid = b.readUInt16BE(0);
    const len = b.readUInt16BE(2);
    const topic = b.toString('utf8', 4, 4 + len);
    const qos = b[4 + len] & 1;
    const s = this.session;
    if (!s) return void this.socket.destroy();
    s.subs.add(topic);
    let set = byTopic.get(topic);
    if (!set) byTopic.set(topic, (set = new Set()));
    set.add(s);
    void redis?.hset(`${PREFIX}s:${s.id}`, 'subs', [...s.subs].join('\n'));
    this.socket.write(Buffer.from([0x90, 3, pid >> 8, pid & 255, qos]));
  }

  private async publish(flags: number, b: Buffer): Promise<void> {
    const qos = (flags >> 1) & 3;
    const tlen = b.readUInt16BE(0);
    const topic = b.toString('utf8', 2, 2 + tlen);
    const pid = qos ? b.readUInt16BE(2 + tlen) : 0;
    const payload = b.subarray(2 + tlen + (qos ? 2 : 0));
    if (qos) {
      // The QoS 1 PUBLISH every subscriber gets, packet id 0 until delivery.
      const head = [0x32];
      for (let n = 2 + tlen + 2 + payload.length; ; n >>= 7) {
        if (n < 128) {
          head.push(n);
          break;
        }
        head.push((n & 127) | 128);
      }
      const entry = Buffer.concat([Buffer.from(head), b.subarray(0, 2 + tlen), Buffer.from([0, 0]), payload]);
      const writes: Promise<unknown>[] = [];
      for (const s of byTopic.get(topic) ?? []) {
        if (s.conn) {
          const live = Buffer.from(entry);
          numberPackets(live, s.conn.id);
          s.conn.socket.write(live);
        } else if (memory) s.queue.push(entry);
        else writes.push(redis!.rpush(`${PREFIX}q:${s.id}`, entry));
      }
      await Promise.all(writes);
      this.socket.write(Buffer.from([0x40, 2, pid >> 8, pid & 255]));
    }
  }

  private closed(): void {
    const s = this.session;
    if (!s || s.conn !== this) return;
    s.conn = undefined;
    void redis?.hset(`${PREFIX}s:${s.id}`, 'owner', '');
  }
}

const server = net.createServer((socket) => new Conn(socket));
server.listen(port, '127.0.0.1', () => process.stdout.write(`mqtt session floor (${memory ? 'memory' : 'redis'}) on ${port}\n`));
process.on('SIGTERM', () => {
  server.close();
  redis?.disconnect();
  process.exit(0);
});
