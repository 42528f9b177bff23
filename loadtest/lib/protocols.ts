import type WebSocket from 'ws';
import { countOccurrences, expectFrame, type WireProtocol } from './protocol.ts';

/**
 * orghub JSON frames (`orghub.v1.json`). Deliveries are `{"op":"msg",...}` objects, possibly
 * coalesced into one JSON array per WebSocket message; every element counts.
 * `authHeader` chooses between `Authorization: Bearer` and `?access_token=`.
 */
export function orghubJson(opts: { authHeader?: boolean; subprotocol?: boolean } = {}): WireProtocol {
  const authHeader = opts.authHeader ?? true;
  const MSG = Buffer.from('"op":"msg"');
  let nextId = 1;
  return {
    name: 'orghub.v1.json',
    binary: false,
    serverSpeaksFirst: false,
    subprotocols: opts.subprotocol === false ? undefined : ['orghub.v1.json'],
    url(base, token) {
      if (!token || authHeader) return base;
      return `${base}${base.includes('?') ? '&' : '?'}access_token=${encodeURIComponent(token)}`;
    },
    headers: (token): Record<string, string> => (token && authHeader ? { authorization: `Bearer ${token}` } : {}),
    async handshake(ws, next, topic) {
      if (topic === undefined) return;
      const id = nextId++;
      ws.send(JSON.stringify({ op: 'sub', id, topic }));
      const reply = await expectFrame(next, (s) => s.includes(`"id":${id}`), `ok for sub ${topic}`);
      const frames = ([] as { op?: string; id?: number; code?: string; message?: string }[]).concat(JSON.parse(reply));
      const f = frames.find((x) => x.id === id);
      if (f?.op !== 'ok') throw new Error(`sub ${topic} refused: ${f?.code ?? '?'} ${f?.message ?? reply}`);
    },
    publishFrame: (topic, payload) => `{"op":"pub","topic":${JSON.stringify(topic)},"data":"${payload}"}`,
    makeCounter: () => (data) => countOccurrences(data, MSG),
    makeParser: () => (data, onPayload) => {
      const parsed = JSON.parse(data.toString());
      const frames: { op?: string; data?: unknown }[] = Array.isArray(parsed) ? parsed : [parsed];
      let n = 0;
      for (const f of frames) {
        if (f.op !== 'msg') continue;
        n++;
        if (typeof f.data === 'string') onPayload(f.data);
      }
      return n;
    },
  };
}

const CRLF = Buffer.from('\r\n');
const PONG = Buffer.from('PONG\r\n');

/**
 * NATS client protocol over nats-server's WebSocket listener (binary frames). nats-server packs
 * many `MSG` lines into one frame and may split one across frames, so the cheap counter carries
 * the last 3 bytes over, and the full parser keeps an incomplete tail.
 */
export function natsWs(): WireProtocol {
  const MSG = Buffer.from('MSG ');
  let nextSid = 1;
  return {
    name: 'nats-ws',
    binary: true,
    serverSpeaksFirst: true,
    url: (base) => base,
    async handshake(ws, next, topic) {
      await expectFrame(next, (s) => s.startsWith('INFO'), 'INFO');
      let out = 'CONNECT {"verbose":false,"pedantic":false,"echo":false}\r\n';
      if (topic !== undefined) out += `SUB ${topic} ${nextSid++}\r\n`;
      ws.send(Buffer.from(`${out}PING\r\n`));
      const r = await expectFrame(next, (s) => s.includes('PONG') || s.includes('-ERR'), 'PONG');
      if (r.includes('-ERR')) throw new Error(`nats: ${r.trim()}`);
    },
    publishFrame: (topic, payload) => Buffer.from(`PUB ${topic} ${payload.length}\r\n${payload}\r\n`, 'latin1'),
    makeCounter(ws) {
      let tail = Buffer.alloc(0);
      return (data) => {
        let n = countOccurrences(data, MSG);
        if (tail.length) {
          // A "MSG " split across two frames: look only at matches that straddle the boundary.
          const seam = Buffer.concat([tail, data.subarray(0, 3)]);
          const i = seam.indexOf(MSG);
          if (i !== -1 && i < tail.length && i + 4 > tail.length) n++;
        }
        tail = Buffer.from(data.subarray(Math.max(0, data.length - 3)));
        if (n === 0 && data.length <= 64) {
          // Server keep-alives (nats-server pings soon after connect to learn the RTT) are not
          // deliveries and not anomalies.
          if (data.includes('PING\r\n')) ws.send(PONG);
          return -1;
        }
        return n;
      };
    },
    makeParser(ws) {
      let pending: Buffer = Buffer.alloc(0);
      return (data, onPayload) => {
        let buf = pending.length ? Buffer.concat([pending, data]) : data;
        let n = 0;
        let pos = 0;
        for (;;) {
          const eol = buf.indexOf(CRLF, pos);
          if (eol === -1) break;
          if (buf[pos] === 0x4d /* M */ && buf.toString('latin1', pos, pos + 4) === 'MSG ') {
            const head = buf.toString('latin1', pos, eol).split(' ');
            const size = Number(head[head.length - 1]);
            const end = eol + 2 + size;
            if (end + 2 > buf.length) break;
            onPayload(buf.toString('latin1', eol + 2, end));
            n++;
            pos = end + 2;
          } else {
            if (buf.toString('latin1', pos, eol) === 'PING') ws.send(PONG);
            pos = eol + 2;
          }
        }
        pending = pos < buf.length ? Buffer.from(buf.subarray(pos)) : Buffer.alloc(0);
        return n;
      };
    },
  };
}
