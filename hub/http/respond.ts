import type { HttpResponse } from '@trufflesuite/uws-js-unofficial';
import { HubError, httpStatus, type ErrorCode } from '../errors.ts';

const reasons: Record<number, string> = { 200: 'OK', 201: 'Created', 202: 'Accepted', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 409: 'Conflict', 413: 'Payload Too Large', 415: 'Unsupported Media Type', 429: 'Too Many Requests', 500: 'Internal Server Error', 503: 'Service Unavailable' };

/** A uWS response that remembers whether it was aborted or already answered. */
export interface Reply {
  json(status: number, body: unknown): void;
  error(err: unknown): void;
  readonly done: boolean;
}

export function reply(res: HttpResponse, onInternal: (err: unknown) => void): Reply {
  let done = false;
  res.onAborted(() => {
    done = true;
  });
  const json = (status: number, body: unknown) => {
    if (done) return;
    done = true;
    res.cork(() => {
      res.writeStatus(`${status} ${reasons[status] ?? ''}`).writeHeader('content-type', 'application/json').end(JSON.stringify(body));
    });
  };
  return {
    json,
    error(err: unknown) {
      if (err instanceof HubError) return json(httpStatus[err.code], errorBody(err.code, err.message));
      onInternal(err);
      json(500, errorBody('internal', 'internal error'));
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
