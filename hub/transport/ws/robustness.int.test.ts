import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { Packr } from 'msgpackr';
import type { NatsConnection } from '@nats-io/transport-node';
import { createTestIssuer, type TestIssuer } from '../../testing/issuer.ts';
import { startHubProcess, testOrg, type HubProcess } from '../../testing/hubProcess.ts';
import { sleep, TestClient, type Frame } from '../../testing/wsClient.ts';
import { connectNats } from '../../testing/natsClient.ts';
import { decodeFrame, FrameError } from '../../protocol/frames.ts';
import { CloseCode } from '../../errors.ts';
import { hardFrameBytes } from './wsTransport.ts';

const packr = new Packr({ useRecords: false, mapsAsObjects: true });
const MAX_FRAME = 65536;
/** Every code a bad frame may legitimately get; `internal` (a hub bug) is deliberately absent. */
const STABLE_CODES = new Set(['bad_frame', 'unknown_op', 'invalid', 'bad_topic', 'forbidden', 'unauthorized', 'limit', 'unavailable', 'unknown_command', 'conflict', 'not_found']);

/** mulberry32: a seeded PRNG, so a failing fuzz run can be replayed with ORGHUB_FUZZ_SEED. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  return { next, int, pick };
}
type Rng = ReturnType<typeof prng>;

const hubRss = (hub: HubProcess) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${hub.child.pid}/status`, 'utf8'))![1]) * 1024;
async function wsConnections(hub: HubProcess): Promise<number> {
  const text = await (await fetch(`${hub.url}/metrics`)).text();
  return Number(/^orghub_ws_connections (\d+)/m.exec(text)![1]);
}

/** Random values of every JSON type, including the ones that break naive code. */
function hostileValue(r: Rng): unknown {
  switch (r.int(16)) {
    case 0: return null;
    case 1: return r.pick([true, false]);
    case 2: return r.pick([0, -1, 1.5, -0, 1e308, -1e308, 2 ** 53 + 1, 2 ** 64, Number.MIN_VALUE]);
    case 3: return '';
    case 4: return 'x'.repeat(r.int(20_000));
    case 5: return [];
    case 6: return {};
    case 7: return { __proto__: null, constructor: { prototype: { polluted: 1 } } };
    case 8: return '\u0000\u202e\ud800\uffff';
    case 9: return 'devices/../../x';
    case 10: return '#';
    case 11: return '$sys/x';
    case 12: return [1, [2, [3, [4]]]];
    case 13: return 'a'.repeat(64) + '/b';
    case 14: return { op: 'pub', topic: 'x', data: 1 };
    default: return r.int(1_000_000);
  }
}

const KEYS = ['op', 'id', 'topic', 'data', 'token', 'type', 'key', '__proto__', 'constructor', 'prototype', 'org', 'tid', 'sub', 'hasOwnProperty', 'toString', 'valueOf', ''];
const OPS = ['sub', 'unsub', 'pub', 'cmd', 'auth', 'ping', 'PUB', 'pub ', 'msg', 'ok', 'err', 'pong', '__proto__', 'constructor', '', 'sub\u0000', 'toString'];

function deepNest(r: Rng, budget: number): string {
  if (r.int(2) === 0) {
    const depth = 1 + r.int(Math.floor(budget / 2));
    return '['.repeat(depth) + ']'.repeat(depth);
  }
  const depth = 1 + r.int(Math.floor(budget / 6));
  return '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
}

/** One fuzz case for the JSON subprotocol: text bytes (valid UTF-8 or not) or a binary frame. */
function jsonCase(r: Rng, templates: string[]): { bytes: Buffer; binary: boolean } {
  const tpl = r.pick(templates);
  let s: string;
  switch (r.int(14)) {
    case 0: { // random bytes as a binary frame: a protocol violation on the JSON subprotocol
      if (r.int(8) === 0) return { bytes: Buffer.from(Array.from({ length: 1 + r.int(200) }, () => r.int(256))), binary: true };
      s = tpl;
      break;
    }
    case 1: { // random bytes as text; some of it is not UTF-8 (uWS closes on that)
      const bytes = Buffer.from(Array.from({ length: r.int(300) }, () => r.int(256)));
      if (r.int(10) !== 0) return { bytes: Buffer.from(bytes.toString('latin1'), 'utf8'), binary: false };
      return { bytes, binary: false };
    }
    case 2: s = tpl.slice(0, r.int(tpl.length)); break; // truncated
    case 3: { // characters flipped
      const chars = [...tpl];
      for (let k = 1 + r.int(4); k > 0; k--) chars[r.int(chars.length)] = r.pick(['{', '}', '[', ']', '"', ':', ',', '\\', '0', 'e', '-', ' ', 'ü', '\u0000', 'n']);
      s = chars.join('');
      break;
    }
    case 4: { // junk inserted
      const at = r.int(tpl.length);
      s = tpl.slice(0, at) + r.pick(['"', '{}', '[', 'null', ',,', '\\u0000', '1e999', '"__proto__":{}', '\ud83d\ude00']) + tpl.slice(at);
      break;
    }
    case 5: { // a field set to a value of the wrong type
      const o = JSON.parse(tpl) as Record<string, unknown>;
      o[r.pick(['op', 'id', 'topic', 'data', 'token', 'type', 'key'])] = hostileValue(r);
      s = JSON.stringify(o);
      break;
    }
    case 6: { // an extra key, written raw so `__proto__` is an own key as a client would send it
      s = `{${JSON.stringify(r.pick(KEYS))}:${JSON.stringify(hostileValue(r)) ?? 'null'},${tpl.slice(1)}`;
      break;
    }
    case 7: { // a field removed
      const o = JSON.parse(tpl) as Record<string, unknown>;
      delete o[r.pick(Object.keys(o))];
      s = JSON.stringify(o);
      break;
    }
    case 8: s = JSON.stringify({ ...JSON.parse(tpl), op: r.pick(OPS) }); break; // unknown or odd op
    case 9: { // huge and odd ids, raw so that number literals survive
      const id = r.pick(['1e308', '123456789012345678901234567890', '-1', '1.5', '-0', '"' + 'i'.repeat(65) + '"', '""', 'null', '[1]', '{"a":1}', '9007199254740993']);
      s = `{"id":${id},${tpl.slice(1).replace(/"id":[^,}]*,?/, '')}`;
      break;
    }
    case 10: { // deep nesting, in data or as the whole frame
      const nest = deepNest(r, 60_000 - tpl.length);
      s = r.int(2) === 0 ? `{"op":"pub","id":${r.int(1000)},"topic":"fz/deep","data":${nest}}` : nest;
      break;
    }
    case 11: s = r.pick(['1', '"str"', 'null', 'true', '[]', '[{"op":"ping","id":1}]', '', ' ', '{}', '{"op":null}', '{"op":{}}', '{"op":["sub"]}', '\ufeff{"op":"ping"}']); break;
    case 12: s = Array.from({ length: r.int(200) }, () => String.fromCharCode(r.int(0x10000))).join(''); break; // random UTF-16, lone surrogates included
    default: s = tpl; break; // a valid frame now and then, so that the handlers run too
  }
  const bytes = Buffer.from(s, 'utf8');
  return { bytes: bytes.length > MAX_FRAME - 100 ? bytes.subarray(0, MAX_FRAME - 100) : bytes, binary: false };
}

/** One fuzz case for the msgpack subprotocol (binary frames; a text frame is a violation). */
function msgpackCase(r: Rng, templates: object[]): { bytes: Buffer; binary: boolean } {
  const tpl = r.pick(templates);
  const packed = Buffer.from(packr.pack(tpl));
  switch (r.int(8)) {
    case 0:
      if (r.int(6) === 0) return { bytes: Buffer.from('{"op":"ping"}'), binary: false };
      return { bytes: packed, binary: true };
    case 1: return { bytes: Buffer.from(Array.from({ length: r.int(300) }, () => r.int(256))), binary: true };
    case 2: return { bytes: packed.subarray(0, r.int(packed.length)), binary: true };
    case 3: {
      const b = Buffer.from(packed);
      for (let k = 1 + r.int(4); k > 0; k--) b[r.int(b.length)] = r.int(256);
      return { bytes: b, binary: true };
    }
    case 4: {
      const o: Record<string, unknown> = { ...tpl };
      o[r.pick(KEYS)] = hostileValue(r);
      return { bytes: Buffer.from(packr.pack(o)), binary: true };
    }
    case 5: return { bytes: Buffer.from(packr.pack(r.pick([1, 'x', null, [tpl], new Uint8Array(3), { op: r.pick(OPS) }]))), binary: true };
    case 6: { // deep nesting in data
      let data: unknown = 1;
      for (let d = r.int(5000); d > 0; d--) data = [data];
      try {
        return { bytes: Buffer.from(packr.pack({ op: 'pub', id: 1, topic: 'fz/deep', data })), binary: true };
      } catch {
        return { bytes: packed, binary: true };
      }
    }
    default: return { bytes: packed, binary: true };
  }
}

/** What the hub must answer to one frame, from an independent parse plus the hub's own decoder. */
function expectation(bytes: Buffer, enc: 'json' | 'msgpack'): { code: string; id?: number | string } | undefined {
  if (enc === 'json') {
    let v: unknown;
    try {
      v = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
    } catch {
      return { code: 'bad_frame' };
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return { code: 'bad_frame' };
  }
  try {
    const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    decodeFrame(ab as ArrayBuffer, enc === 'msgpack', enc);
    return undefined; // a valid frame: handled, answered with whatever its handler decides
  } catch (err) {
    if (!(err instanceof FrameError)) throw err;
    return { code: err.code, id: err.requestId };
  }
}

/**
 * Robustness of one hub process under hostile input, plus the slow-consumer and idle policies,
 * each on its own hub (so that connection counts in /metrics are exact).
 */
describe('ws robustness', () => {
  let issuer: TestIssuer;
  let hub: HubProcess; // fuzz, oversized frames
  let slowHub: HubProcess; // ORGHUB_MAX_BACKPRESSURE=262144
  let idleHub: HubProcess; // ORGHUB_IDLE_TIMEOUT=8
  let nc: NatsConnection;
  const clients: TestClient[] = [];
  let idle: { client: TestClient; quiet: TestClient; pausedAt: number; closedAfter: Promise<number> };

  const connect = async (h: HubProcess, org: string, sub: string, opts: { enc?: 'json' | 'msgpack'; roles?: string[] } = {}) => {
    const c = await TestClient.connect(h.wsUrl, await issuer.token(org, sub, opts.roles ?? ['admin']), { enc: opts.enc });
    clients.push(c);
    return c;
  };
  const expectOk = async (c: TestClient, frame: Frame) => {
    const r = await c.request(frame);
    assert.equal(r.op, 'ok', `${JSON.stringify(frame)} → ${JSON.stringify(r)}`);
  };

  before(async () => {
    issuer = await createTestIssuer();
    [hub, slowHub, idleHub] = await Promise.all([
      startHubProcess(issuer.env, { timeoutMs: 45_000 }),
      startHubProcess({ ...issuer.env, ORGHUB_MAX_BACKPRESSURE: '262144' }, { timeoutMs: 45_000 }),
      startHubProcess({ ...issuer.env, ORGHUB_IDLE_TIMEOUT: '8' }, { timeoutMs: 45_000 }),
    ]);
    nc = await connectNats();
    // The idle check runs in the background while the other tests do their work.
    const org = testOrg('idle');
    const client = await connect(idleHub, org, 'idle');
    const quiet = await connect(idleHub, org, 'quiet'); // never sends, but answers pings (ws does that)
    (client.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const pausedAt = Date.now();
    const closedAfter = (async () => {
      while (Date.now() - pausedAt < 30_000) {
        if ((await wsConnections(idleHub)) === 1) return Date.now() - pausedAt;
        await sleep(250);
      }
      return Infinity;
    })();
    idle = { client, quiet, pausedAt, closedAfter };
  });

  after(async () => {
    for (const c of clients) (c.ws as unknown as { _socket?: { resume(): void } })._socket?.resume();
    await Promise.all(clients.map((c) => Promise.race([c.close(), sleep(2000)])));
    await nc?.close();
    await Promise.all([hub?.stop(), slowHub?.stop(), idleHub?.stop()]);
  });

  it('ws robustness - thousands of hostile frames get stable err codes while other traffic is delivered exactly', async (t) => {
    const seed = Number(process.env.ORGHUB_FUZZ_SEED) || Math.floor(Math.random() * 2 ** 31);
    t.diagnostic(`fuzz seed ${seed} (replay with ORGHUB_FUZZ_SEED=${seed})`);
    const r = prng(seed);
    const org = testOrg('fuzz');
    const fuzzToken = await issuer.token(org, 'fuzzer');

    // The traffic that must not notice: a publisher, a JSON subscriber and a msgpack subscriber of `#`
    // (which also receives the fuzzer's valid publishes, deeply nested ones included).
    const pub = await connect(hub, org, 'tp');
    const subJ = await connect(hub, org, 'ts');
    const subM = await connect(hub, org, 'tm', { enc: 'msgpack' });
    await expectOk(subJ, { op: 'sub', topic: 'traffic/#' });
    await expectOk(subM, { op: 'sub', topic: '#' });
    const TRAFFIC = 2000;
    let fuzzing = true;
    const traffic = (async () => {
      for (let seq = 0; seq < TRAFFIC; seq += 10) {
        const acks = [];
        for (let k = seq; k < seq + 10; k++) acks.push(pub.request({ op: 'pub', topic: 'traffic/seq', data: { seq: k } }, 15_000));
        for (const a of await Promise.all(acks)) assert.equal(a.op, 'ok', JSON.stringify(a));
        if (fuzzing) await sleep(2);
      }
    })();

    const jsonTemplates = [
      { op: 'sub', id: 1, topic: 'fz/a/+' },
      { op: 'unsub', id: 2, topic: 'fz/#' },
      { op: 'sub', id: 'fz', topic: 'fz/#' },
      { op: 'pub', id: 3, topic: 'fz/x', data: { a: 1, b: [1, 2, 's'], c: null } },
      { op: 'pub', topic: 'fz/y', data: 'str' },
      { op: 'cmd', id: 4, type: 'device.reboot', topic: 'devices/d1/commands', data: { reason: 'fuzz' }, key: `fz-${seed}` },
      { op: 'auth', id: 5, token: fuzzToken },
      { op: 'ping', id: 6 },
    ].map((f) => JSON.stringify(f));

    const counts: Record<string, number> = {};
    const closes: Record<string, number> = {};
    let barrier = 0;
    const fuzzPhase = async (enc: 'json' | 'msgpack', n: number, make: () => { bytes: Buffer; binary: boolean }) => {
      let f = await TestClient.connect(hub.wsUrl, fuzzToken, { enc });
      clients.push(f);
      const violation = (c: { bytes: Buffer; binary: boolean }) => c.binary !== (enc === 'msgpack') || (!c.binary && !isUtf8(c.bytes));
      let chunk: { bytes: Buffer; expect?: { code: string; id?: number | string } }[] = [];
      const flush = async () => {
        if (chunk.length === 0) return;
        const start = f.frames.length;
        const ids: string[] = [];
        for (const c of chunk) {
          f.sendRaw(c.bytes, enc === 'msgpack');
          const id = `~b${barrier++}`;
          ids.push(id);
          f.send({ op: 'ping', id });
        }
        await f.waitFor((x) => x.op === 'pong' && x.id === ids.at(-1), 20_000);
        let k = 0;
        let window: Frame[] = [];
        for (let i = start; i < f.frames.length && k < chunk.length; i++) {
          const x = f.frames[i]!;
          if (x.op === 'err') {
            assert.ok(STABLE_CODES.has(x.code), `seed ${seed}: unstable err code ${JSON.stringify(x)}`);
            counts[x.code] = (counts[x.code] ?? 0) + 1;
          }
          if (x.op !== 'pong' || x.id !== ids[k]) {
            window.push(x);
            continue;
          }
          const want = chunk[k]!.expect;
          if (want) {
            const got = window.find((w) => w.op === 'err' && w.code === want.code && w.id === want.id);
            // The message is built only on failure, and safely: the window may hold a `msg` of the
            // fuzzer's own deeply nested publishes, which JSON.stringify cannot encode (RangeError).
            const shown = () => { try { return JSON.stringify(window).slice(0, 500); } catch { return `${window.length} frames, one nested too deep to print`; } };
            if (!got) assert.fail(`seed ${seed}: frame ${JSON.stringify(chunk[k]!.bytes.toString('utf8').slice(0, 200))} expected err ${JSON.stringify(want)}, got ${shown()}`);
          }
          window = [];
          k++;
        }
        assert.equal(k, chunk.length, 'every barrier was answered in order');
        chunk = [];
      };
      for (let i = 0; i < n; i++) {
        const c = make();
        if (!violation(c)) {
          chunk.push({ bytes: c.bytes, expect: expectation(c.bytes, enc) });
          if (chunk.length === 250) await flush();
          continue;
        }
        await flush();
        f.sendRaw(c.bytes, c.binary);
        const code = await Promise.race([f.closed, sleep(5000).then(() => -1)]);
        closes[code] = (closes[code] ?? 0) + 1;
        if (c.binary !== (enc === 'msgpack')) assert.equal(code, 4200, `seed ${seed}: wrong frame type must close with 4200`);
        else assert.ok(code === 1007 || code === 1006, `seed ${seed}: invalid UTF-8 text closed with ${code}`);
        f = await TestClient.connect(hub.wsUrl, fuzzToken, { enc });
        clients.push(f);
      }
      await flush();
      await f.close();
    };

    const mpTemplates = jsonTemplates.map((s) => JSON.parse(s) as object).concat([{ op: 'pub', id: 7, topic: 'fz/bin', data: new Uint8Array([0, 1, 255]) }]);
    await fuzzPhase('json', 5000, () => jsonCase(r, jsonTemplates));
    await fuzzPhase('msgpack', 1500, () => msgpackCase(r, mpTemplates));
    fuzzing = false;
    t.diagnostic(`err codes ${JSON.stringify(counts)}; closes ${JSON.stringify(closes)}`);
    assert.ok((counts.bad_frame ?? 0) > 500 && (counts.invalid ?? 0) > 500 && (counts.unknown_op ?? 0) > 50, JSON.stringify(counts));
    assert.ok((closes[4200] ?? 0) > 5, JSON.stringify(closes));

    await traffic;
    await subJ.waitFor((m) => m.op === 'msg' && m.data?.seq === TRAFFIC - 1, 10_000);
    await subM.waitFor((m) => m.op === 'msg' && m.from === 'tp' && m.data?.seq === TRAFFIC - 1, 10_000);
    await Promise.all([subJ.settle(), subM.settle()]);
    const seqJ = subJ.messages('traffic/seq').filter((m) => m.from === 'tp').map((m) => m.data.seq);
    const seqM = subM.messages('traffic/seq').filter((m) => m.from === 'tp').map((m) => m.data.seq);
    const all = Array.from({ length: TRAFFIC }, (_, i) => i);
    assert.deepEqual(seqJ, all, 'the JSON subscriber got every message once, in order');
    assert.deepEqual(seqM, all, 'the msgpack subscriber got every message once, in order');
    assert.equal(subJ.closeCode ?? subM.closeCode ?? pub.closeCode, undefined);

    // The hub is alive and sane: health, a fresh connection, no polluted prototype (`{}` has no op).
    assert.equal((await fetch(`${hub.url}/health`)).status, 200);
    const fresh = await connect(hub, org, 'after');
    fresh.sendRaw('{"id":"canary"}');
    const canary = await fresh.waitFor((x) => x.id === 'canary');
    assert.deepEqual([canary.op, canary.code], ['err', 'invalid']);
    await expectOk(fresh, { op: 'sub', topic: 'after/#' });
    await expectOk(pub, { op: 'pub', topic: 'after/x', data: 1 });
    await fresh.waitFor((x) => x.op === 'msg' && x.topic === 'after/x');
  });

  it('ws robustness - a deeply nested value never reaches the process as a crash, whatever the subscriber encodings', async () => {
    const org = testOrg();
    const j = await connect(hub, org, 'j');
    const m = await connect(hub, org, 'm', { enc: 'msgpack' });
    await expectOk(j, { op: 'sub', topic: 'deep/#' });
    await expectOk(m, { op: 'sub', topic: 'deep/#' });
    for (const depth of [1000, 2500, 4000, 8000, 30_000]) {
      j.sendRaw(`{"op":"pub","id":${depth},"topic":"deep/x","data":${'['.repeat(depth)}${']'.repeat(depth)}}`);
      const r = await j.waitFor((x) => x.id === depth);
      assert.ok(r.op === 'ok' || (r.op === 'err' && r.code === 'invalid'), `depth ${depth}: ${JSON.stringify(r)}`);
    }
    // Also from a raw NATS publisher, which the hub cannot refuse.
    nc.publish(`hub.${org}.deep.nats`, Buffer.from('['.repeat(3000) + ']'.repeat(3000)));
    await nc.flush();
    await expectOk(j, { op: 'pub', topic: 'deep/end', data: 'end' });
    await m.waitFor((x) => x.op === 'msg' && x.topic === 'deep/end');
    await j.waitFor((x) => x.op === 'msg' && x.topic === 'deep/end');
    assert.ok(j.messages('deep/nats').length === 1, 'JSON subscribers get the raw text');
    assert.equal((await fetch(`${hub.url}/health`)).status, 200);
    assert.equal(m.closeCode, undefined);
  });

  it('ws robustness - an oversized frame closes only its own connection', async (t) => {
    const org = testOrg();
    const big = await connect(hub, org, 'big');
    const other = await connect(hub, org, 'other');
    await expectOk(other, { op: 'sub', topic: 'o/#' });
    big.sendRaw(JSON.stringify({ op: 'pub', id: 1, topic: 'o/big', data: 'x'.repeat(MAX_FRAME) }));
    const code = await Promise.race([big.closed, sleep(5000).then(() => -1)]);
    // Above ORGHUB_MAX_FRAME_BYTES: the close frame 1009 (docs/protocol.md).
    assert.equal(code, CloseCode.messageTooBig, `closed with ${code}`);
    const bigBinary = await connect(hub, org, 'big2', { enc: 'msgpack' });
    bigBinary.sendRaw(Buffer.alloc(MAX_FRAME + 1), true);
    assert.equal(await Promise.race([bigBinary.closed, sleep(5000).then(() => -1)]), 1009);
    // Above the hard bound (4x) uWS cuts the TCP connection itself: no close frame, so 1006.
    const huge = await connect(hub, org, 'big3', { enc: 'msgpack' });
    huge.sendRaw(Buffer.alloc(hardFrameBytes(MAX_FRAME) + 1), true);
    assert.equal(await Promise.race([huge.closed, sleep(5000).then(() => -1)]), 1006);

    await expectOk(other, { op: 'pub', topic: 'o/after', data: 'still here' });
    await other.waitFor((x) => x.op === 'msg' && x.topic === 'o/after');
    assert.equal(other.messages('o/big').length, 0, 'the oversized publish was not delivered');
    assert.equal(other.closeCode, undefined);
  });

  it('ws robustness - a slow consumer is cut at the backpressure limit with bounded hub memory, fast ones keep receiving', async (t) => {
    const org = testOrg('slow');
    const slow = await connect(slowHub, org, 'slow');
    await expectOk(slow, { op: 'sub', topic: 'flood/#' });
    const fast = new WebSocket(slowHub.wsUrl, ['orghub.v1.json'], { headers: { authorization: `Bearer ${await issuer.token(org, 'fast')}` }, perMessageDeflate: false });
    let fastMsgs = 0;
    let fastSubscribed = false;
    fast.on('message', (d: Buffer) => {
      const v = JSON.parse(d.toString());
      for (const f of Array.isArray(v) ? v : [v]) {
        if (f.op === 'msg') fastMsgs++;
        else if (f.op === 'ok') fastSubscribed = true;
      }
    });
    await new Promise((resolve, reject) => (fast.once('open', resolve), fast.once('error', reject)));
    fast.send(JSON.stringify({ op: 'sub', id: 1, topic: 'flood/#' }));
    while (!fastSubscribed) await sleep(10);
    assert.equal(await wsConnections(slowHub), 2);
    (slow.ws as unknown as { _socket: { pause(): void } })._socket.pause();

    const payload = Buffer.from(JSON.stringify({ pad: 'x'.repeat(32 * 1024) }));
    const N = 6400; // ~200 MB
    const CHUNK = 8; // 256 KiB, then wait for the fast client: the flood must not make it slow too
    const rss0 = hubRss(slowHub);
    let maxRss = rss0;
    let cutAtBytes = -1;
    const t0 = Date.now();
    for (let i = 0; i < N; i += CHUNK) {
      for (let k = 0; k < CHUNK; k++) nc.publish(`hub.${org}.flood.x`, payload);
      await nc.flush();
      const deadline = Date.now() + 10_000;
      while (fastMsgs < i + CHUNK && Date.now() < deadline) await sleep(1);
      assert.equal(fastMsgs, i + CHUNK, `the fast client fell behind at message ${i}`);
      if (i % (CHUNK * 16) === 0) {
        maxRss = Math.max(maxRss, hubRss(slowHub));
        if (cutAtBytes < 0 && (await wsConnections(slowHub)) === 1) cutAtBytes = (i + CHUNK) * payload.length;
      }
    }
    maxRss = Math.max(maxRss, hubRss(slowHub));
    const grownMb = (maxRss - rss0) / 2 ** 20;
    t.diagnostic(`flood of ${((N * payload.length) / 2 ** 20).toFixed(0)} MB in ${Date.now() - t0} ms; slow client cut after ${(cutAtBytes / 2 ** 20).toFixed(1)} MB published; hub RSS ${(rss0 / 2 ** 20).toFixed(0)} → max ${(maxRss / 2 ** 20).toFixed(0)} MB`);
    assert.ok(cutAtBytes > 0, 'the hub closed the slow consumer during the flood');
    assert.ok(cutAtBytes < 64 * 2 ** 20, `cut only after ${cutAtBytes} bytes`);
    assert.ok(grownMb < 100, `hub RSS grew ${grownMb.toFixed(0)} MB`);
    assert.equal(fastMsgs, N);
    assert.equal(fast.readyState, WebSocket.OPEN);

    // What the slow client sees once it reads again: what was buffered before the cut, then 4001.
    (slow.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    const code = await Promise.race([slow.closed, sleep(15_000).then(() => -1)]);
    t.diagnostic(`slow consumer: client saw close code ${code} after ${slow.messages().length} msgs`);
    assert.equal(code, CloseCode.slowConsumer);
    assert.equal(slow.closeReason, 'slow consumer');
    assert.ok(slow.messages().length > 0 && slow.messages().length < N / 4, `${slow.messages().length} messages before the close`);
    fast.close();
  });

  it('ws robustness - an idle client that stops answering pings is closed, a quiet one that answers stays', async (t) => {
    const closedAfter = await idle.closedAfter;
    t.diagnostic(`idle client closed by the hub ${closedAfter} ms after it stopped reading (ORGHUB_IDLE_TIMEOUT=8)`);
    assert.ok(closedAfter <= 17_000, `idle client not closed within 17 s (${closedAfter} ms)`);
    // The quiet one has now outlived the idle timeout at least once.
    const left = 9000 - (Date.now() - idle.pausedAt);
    if (left > 0) await sleep(left);
    assert.equal(idle.quiet.closeCode, undefined);
    idle.quiet.send({ op: 'ping', id: 'q' });
    await idle.quiet.waitFor((x) => x.op === 'pong' && x.id === 'q');
    assert.equal(await wsConnections(idleHub), 1);
    (idle.client.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    const code = await Promise.race([idle.client.closed, sleep(5000).then(() => -1)]);
    assert.equal(code, CloseCode.idleTimeout);
    assert.equal(idle.client.closeReason, 'idle');
  });
});

function isUtf8(b: Buffer): boolean {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(b);
    return true;
  } catch {
    return false;
  }
}
