/**
 * The HTTP peer of bench:http: a minimal uWebSockets.js endpoint that does what `POST /v1/publish`
 * must do at the least, and nothing more: read the body, parse the same JSON
 * (`{"topic": "...", "data": ...}`), and publish the data's JSON text to NATS on
 * `hub.<org>.<topic segments>` with the same headers the hub sets (content type, sender, timestamp).
 * No token check, no ACL, no topic grammar, no audit: the gap between it and the hub is what those
 * cost. Run: PORT=9002 NATS_URL=nats://127.0.0.1:4222 node --import tsx loadtest/peers/uwsHttp.ts
 */
import uWS from '@trufflesuite/uws-js-unofficial';
import { connect, headers } from '@nats-io/transport-node';

const port = Number(process.env.PORT ?? 9002);
const org = process.env.PEER_ORG ?? 'bench';
const nc = await connect({ servers: process.env.NATS_URL ?? 'nats://127.0.0.1:4222' });
const enc = new TextEncoder();
const app = uWS.App();

function answer(res: uWS.HttpResponse, status: string, body: string): void {
  res.cork(() => res.writeStatus(status).writeHeader('content-type', 'application/json').end(body));
}

app.post('/v1/publish', (res) => {
  let aborted = false;
  res.onAborted(() => (aborted = true));
  const chunks: Buffer[] = [];
  res.onData((chunk, last) => {
    // uWS reuses the chunk's memory after this callback: copy it.
    chunks.push(Buffer.from(chunk.slice(0)));
    if (!last || aborted) return;
    let body: { topic?: unknown; data?: unknown };
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      answer(res, '400 Bad Request', '{"error":{"code":"bad_frame"}}');
      return;
    }
    if (typeof body.topic !== 'string' || body.data === undefined) {
      answer(res, '400 Bad Request', '{"error":{"code":"invalid"}}');
      return;
    }
    const h = headers();
    h.set('Orghub-Content-Type', 'json');
    h.set('Orghub-From', 'peer');
    h.set('Orghub-Ts', String(Date.now()));
    nc.publish(`hub.${org}.${body.topic.split('/').join('.')}`, enc.encode(JSON.stringify(body.data)), { headers: h });
    answer(res, '200 OK', '{"ok":true}');
  });
});

app.any('/*', (res) => {
  res.writeStatus('404 Not Found').end();
});

app.listen('127.0.0.1', port, (token) => {
  if (!token) {
    process.stderr.write(`uws-http: cannot listen on 127.0.0.1:${port}\n`);
    process.exit(1);
  }
  process.stderr.write(`uws-http listening on 127.0.0.1:${port}\n`);
  const stop = (): void => {
    uWS.us_listen_socket_close(token);
    void nc.drain().finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
});
