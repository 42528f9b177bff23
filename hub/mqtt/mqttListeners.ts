import type { TemplatedApp, WebSocket } from '@trufflesuite/uws-js-unofficial';
import net from 'node:net';
import type { BridgeContext } from './bridgeContext.ts';
import { MqttSession, type MqttSocket } from './mqttSession.ts';

/**
 * A TCP connection as the session's `MqttSocket`. A class, not an object of arrow functions: under
 * tsx (esbuild `keepNames`) each named arrow costs a `name` defineProperty whenever it is created,
 * about 0.3 µs each, and this one is built for every connection.
 */
class TcpMqttSocket implements MqttSocket {
  readonly transport = 'tcp';
  readonly remote: string;
  constructor(private readonly socket: net.Socket) {
    this.remote = `${socket.remoteAddress}:${socket.remotePort}`;
  }
  write(b: Buffer): void {
    this.socket.write(b);
  }
  buffered(): number {
    return this.socket.writableLength;
  }
  end(): void {
    const socket = this.socket;
    socket.end();
    // A peer that never reads must not hold the socket open.
    setTimeout(() => socket.destroy(), 2000).unref();
  }
  pause(): void {
    this.socket.pause();
  }
  resume(): void {
    this.socket.resume();
  }
}

/** MQTT over TCP. Resolves with the listening server; rejects with the listen error (EADDRINUSE, ...). */
export function listenTcp(ctx: BridgeContext, host: string, port: number): Promise<net.Server> {
  const server = net.createServer({ noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 }, (socket) => {
    const session = new MqttSession(ctx, new TcpMqttSocket(socket));
    socket.on('data', (chunk: Buffer) => session.feed(chunk));
    socket.on('error', () => {}); // 'close' follows; resets are normal for MQTT clients
    socket.on('close', () => session.onSocketClosed());
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      server.on('error', (err) => ctx.log.error({ err }, 'mqtt listener error'));
      resolve(server);
    });
  });
}

interface WsData {
  session?: MqttSession;
  closed: boolean;
}

/** Subprotocols MQTT clients offer over WebSocket (MQTT 5 §6, and the 3.1 name some clients use). */
const SUBPROTOCOLS = ['mqtt', 'mqttv3.1'];

/**
 * MQTT over WebSocket at `/mqtt` on the hub's HTTP port: binary frames carry the same byte stream
 * as TCP and feed the same session logic. The token is checked in CONNECT, not at the upgrade.
 */
export function mountMqttWebSocket(app: TemplatedApp, ctx: BridgeContext): void {
  app.ws<WsData>('/mqtt', {
    maxPayloadLength: ctx.limits.maxPacket + 16,
    idleTimeout: 120,
    sendPingsAutomatically: true,
    maxBackpressure: ctx.limits.maxBackpressure,
    closeOnBackpressureLimit: 1,
    upgrade: (res, req, context) => {
      const offered = req.getHeader('sec-websocket-protocol').split(',').map((s) => s.trim());
      const proto = SUBPROTOCOLS.find((p) => offered.includes(p));
      if (!proto) {
        res.writeStatus('400 Bad Request').writeHeader('content-type', 'text/plain').end('MQTT over WebSocket needs subprotocol "mqtt"');
        return;
      }
      res.upgrade<WsData>({ closed: false }, req.getHeader('sec-websocket-key'), proto, req.getHeader('sec-websocket-extensions'), context);
    },
    open: (ws: WebSocket<WsData>) => {
      const d = ws.getUserData();
      const sock: MqttSocket = {
        transport: 'ws',
        remote: Buffer.from(ws.getRemoteAddressAsText()).toString(),
        write: (b) => {
          if (!d.closed) ws.send(b, true);
        },
        buffered: () => (d.closed ? 0 : ws.getBufferedAmount()),
        end: () => {
          if (!d.closed) ws.end(1000);
        },
      };
      d.session = new MqttSession(ctx, sock);
    },
    // uWS reuses the message buffer after the callback: the parser keeps a copy.
    message: (ws, message) => ws.getUserData().session?.feed(Buffer.from(new Uint8Array(message))),
    close: (ws) => {
      const d = ws.getUserData();
      d.closed = true;
      d.session?.onSocketClosed();
    },
  });
}
