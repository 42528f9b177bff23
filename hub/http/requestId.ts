import { randomUUID } from 'node:crypto';

/**
 * A caller's `X-Request-Id` is kept only when it looks like an id: 8-128 characters of letters,
 * digits and `._:-`, starting with a letter or digit. Anything else (empty, too long, spaces, a
 * token pasted by mistake is still possible but cannot inject log lines or headers) gets a fresh
 * UUID. The id is returned in `X-Request-Id`, logged on every line of the request, and recorded as
 * `correlationId` (and `session`) of the events the request causes.
 */
const REQUEST_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{7,127}$/;

export function requestIdOf(header: string | undefined): string {
  return header && REQUEST_ID.test(header) ? header : randomUUID();
}
