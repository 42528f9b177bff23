import type { HttpResponse } from '@trufflesuite/uws-js-unofficial';
import { HubError, httpStatus, RateLimitedError, type ErrorCode } from '../errors.ts';

const reasons: Record<number, string> = { 200: 'OK', 201: 'Created', 202: 'Accepted', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 409: 'Conflict', 413: 'Payload Too Large', 415: 'Unsupported Media Type', 429: 'Too Many Requests', 500: 'Internal Server Error', 503: 'Service Unavailable' };

/** A uWS response that remembers whether it was aborted or already answered. */
export interface Reply {
  json(status: number, body: unknown): void;
  error(err: unknown): void;
  /**
   * Starts a chunked 200 response with these headers and hands back its writer; the reply counts
   * as answered from here on (a later error can only cut the connection).
   */
  stream(headers: Record<string, string>): StreamWriter;
  readonly done: boolean;
}

/** A streamed body with uWS backpressure: at most one chunk waits in uWS beyond the socket. */
export interface StreamWriter {
  /** Resolves true once more may be written, false when the client has gone (stop producing). */
  write(chunk: string): Promise<boolean>;
  end(): void;
  /** Closes the connection without the final chunk, so the client sees a truncated body, not a short one. */
  fail(): void;
}

/** `requestId` is echoed in `X-Request-Id` on every answer; `log` (the request's child logger) gets a debug line per answer. */
export function reply(res: HttpResponse, onInternal: (err: unknown) => void, ctx?: { requestId: string; log?: { debug(o: object, m: string): void } }): Reply {
  let done = false;
  let aborted = false;
  let onAbort: (() => void) | undefined;
  res.onAborted(() => {
    done = true;
    aborted = true;
    onAbort?.();
  });
  const json = (status: number, body: unknown, retryAfterMs?: number) => {
    if (done) return;
    done = true;
    ctx?.log?.debug({ status }, 'http answered');
    res.cork(() => {
      res.writeStatus(`${status} ${reasons[status] ?? ''}`);
      if (ctx) res.writeHeader('x-request-id', ctx.requestId);
      if (retryAfterMs !== undefined) res.writeHeader('retry-after', String(Math.max(1, Math.ceil(retryAfterMs / 1000))));
      res.writeHeader('content-type', 'application/json').end(JSON.stringify(body));
    });
  };
  return {
    json,
    error(err: unknown) {
      if (err instanceof HubError) {
        const retry = err.retryAfterMs === undefined ? undefined : { retryAfterMs: err.retryAfterMs };
        return json(httpStatus[err.code], errorBody(err.code, err.message, retry), err.retryAfterMs);
      }
      onInternal(err);
      json(500, errorBody('internal', 'internal error'));
    },
    stream(headers) {
      done = true;
      let started = false;
      let closed = false;
      const head = () => {
        res.writeStatus('200 OK');
        if (ctx) res.writeHeader('x-request-id', ctx.requestId);
        ctx?.log?.debug({ status: 200 }, 'http streaming');
        for (const [k, v] of Object.entries(headers)) res.writeHeader(k, v);
      };
      return {
        write(chunk) {
          if (aborted || closed) return Promise.resolve(false);
          if (chunk.length === 0) return Promise.resolve(true); // an empty chunk would end a chunked body
          let ok = false;
          res.cork(() => {
            if (!started) head();
            started = true;
            ok = res.write(chunk);
          });
          if (ok) return Promise.resolve(true);
          // uWS buffered the chunk; produce more only once the socket has drained (or the client left).
          return new Promise<boolean>((resolve) => {
            onAbort = () => resolve(false);
            res.onWritable(() => {
              onAbort = undefined;
              resolve(true);
              return true;
            });
          });
        },
        end() {
          if (aborted || closed) return;
          closed = true;
          res.cork(() => {
            if (!started) head();
            res.end();
          });
        },
        fail() {
          if (aborted || closed) return;
          closed = true;
          res.close();
        },
      };
    },
    get done() {
      return done;
    },
  };
}

export function errorBody(code: ErrorCode, message: string, extra?: object): object {
  return { error: { code, message, ...extra } };
}

/**
 * Reads a request body up to `max` bytes. A declared or actual size above the bound rejects with
 * `too_large` (413) as soon as it is known; the rest of the body is ignored. Must be called
 * synchronously inside the route handler (uWS requires onData before returning).
 */
export function readBody(res: HttpResponse, contentLength: string, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    if (contentLength && Number(contentLength) > max) {
      res.onData(() => {});
      return reject(new HubError('too_large', `body exceeds ${max} bytes`));
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    res.onData((chunk, isLast) => {
      if (failed) return;
      size += chunk.byteLength;
      if (size > max) {
        failed = true;
        return reject(new HubError('too_large', `body exceeds ${max} bytes`));
      }
      chunks.push(Buffer.from(chunk.slice(0)));
      if (isLast) resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
    });
  });
}
