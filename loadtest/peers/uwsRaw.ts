/**
 * The "minimal uWebSockets.js pub/sub" peer of BASELINES.md: no auth, one frame per message,
 * uWS's native publish. It speaks just enough of orghub's JSON frames for the same generator:
 * `?topic=` subscribes on open (connection storms, idle memory); `{"op":"sub","id":..}` is
 * answered with `ok`; `{"op":"pub"}` is republished as one `{"op":"msg"}` frame per message.
 * Run: PORT=9001 node --import tsx loadtest/peers/uwsRaw.ts
 */
import uWS from '@trufflesuite/uws-js-unofficial';

interface UserData { topic: string }

const port = Number(process.env.PORT ?? 9001);
const app = uWS.App();

app.ws<UserData>('/*', {
  compression: uWS.DISABLED,
  maxPayloadLength: 1024 * 1024,
  maxBackpressure: 64 * 1024 * 1024,
  idleTimeout: 120,
  upgrade: (res, req, context) => {
    const topic = new URLSearchParams(req.getQuery() ?? '').get('topic') ?? '';
    res.upgrade<UserData>(
      { topic },
      req.getHeader('sec-websocket-key'),
      req.getHeader('sec-websocket-protocol').split(',')[0]?.trim() ?? '',
      req.getHeader('sec-websocket-extensions'),
      context,
    );
  },
  open: (ws) => {
    const { topic } = ws.getUserData();
    if (topic) ws.subscribe(topic);
  },
  message: (ws, message) => {
    let f: { op?: string; id?: number; topic?: string; data?: unknown };
    try {
      f = JSON.parse(Buffer.from(message).toString());
    } catch {
      ws.send('{"op":"err","code":"bad_frame"}');
      return;
    }
    if (f.op === 'sub' && typeof f.topic === 'string') {
      ws.subscribe(f.topic);
      ws.send(`{"op":"ok","id":${Number(f.id)}}`);
    } else if (f.op === 'pub' && typeof f.topic === 'string') {
      app.publish(f.topic, JSON.stringify({ op: 'msg', topic: f.topic, data: f.data, ts: Date.now() }));
      if (f.id !== undefined) ws.send(`{"op":"ok","id":${Number(f.id)}}`);
    } else if (f.op === 'ping') {
      ws.send('{"op":"pong"}');
    }
  },
});

app.any('/*', (res) => { res.end('ok'); });

app.listen('127.0.0.1', port, (token) => {
  if (!token) {
    process.stderr.write(`uws-raw: cannot listen on 127.0.0.1:${port}\n`);
    process.exit(1);
  }
  process.stderr.write(`uws-raw listening on 127.0.0.1:${port}\n`);
  const stop = (): void => { uWS.us_listen_socket_close(token); process.exit(0); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
});
