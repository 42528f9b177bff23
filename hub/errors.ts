/**
 * Typed errors with stable wire codes. Every failure a client can see maps to one
 * `ErrorCode`; the string is part of the public protocol (docs/protocol.md) and never changes.
 */
export type ErrorCode =
  | 'bad_frame' // not JSON / not msgpack / not an object
  | 'unknown_op'
  | 'invalid' // a field is missing or has the wrong type, or a command payload fails its schema
  | 'bad_topic'
  | 'forbidden'
  | 'unauthorized'
  | 'too_large'
  | 'limit' // a cap or quota was hit (subscriptions, connections, patterns, in-flight commands, message size)
  | 'rate_limited' // a rate limit was hit; retry after `retryAfterMs`
  | 'unavailable' // a dependency (NATS, event store) is down; nothing was accepted
  | 'overloaded' // the event store's queue (or this org's share of it) is full; nothing was accepted, retry after `retryAfterMs`
  | 'conflict' // optimistic concurrency check failed
  | 'unknown_command'
  | 'not_found'
  | 'internal';

export class HubError extends Error {
  override name = 'HubError';
  /** When set, the client should wait this long before retrying (WS `retryAfterMs`, HTTP `Retry-After`). */
  readonly retryAfterMs?: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown; retryAfterMs?: number },
  ) {
    super(message, options);
    if (options?.retryAfterMs !== undefined) this.retryAfterMs = options.retryAfterMs;
  }
}

/** Raised by token verification; `reason` is short and safe to show to the client. */
export class AuthError extends HubError {
  override name = 'AuthError';
  constructor(readonly reason: string, options?: { cause?: unknown }) {
    super('unauthorized', reason, options);
  }
}

/** A rate limit refused the request; `retryAfterMs` says when a retry may succeed. */
export class RateLimitedError extends HubError {
  override name = 'RateLimitedError';
  declare readonly retryAfterMs: number;
  constructor(retryAfterMs: number, what: string) {
    super('rate_limited', `${what} rate limit reached; retry after ${retryAfterMs} ms`, { retryAfterMs });
  }
}

/** Invalid configuration: names the environment variable at fault. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/**
 * WebSocket close codes, in ranges that tell a client what to do next:
 * 4000-4099 reconnect (with backoff), 4100-4199 get a fresh token then reconnect,
 * 4200-4299 do not reconnect until the client is fixed.
 */
export const CloseCode = {
  shutdown: 4000,
  /** A frame above ORGHUB_MAX_FRAME_BYTES (RFC 6455 "message too big"). */
  messageTooBig: 1009,
  slowConsumer: 4001,
  idleTimeout: 4002,
  rateLimited: 4003,
  tokenExpired: 4100,
  tokenRevoked: 4101,
  /** The org was suspended by the platform operator: reconnecting is refused until it is resumed. */
  orgSuspended: 4202,
  protocolViolation: 4200,
  forbidden: 4201,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/** HTTP status for each wire code, used by the HTTP API. */
export const httpStatus: Record<ErrorCode, number> = {
  bad_frame: 400,
  unknown_op: 400,
  invalid: 400,
  bad_topic: 400,
  forbidden: 403,
  unauthorized: 401,
  too_large: 413,
  limit: 429,
  rate_limited: 429,
  unavailable: 503,
  overloaded: 503,
  conflict: 409,
  unknown_command: 400,
  not_found: 404,
  internal: 500,
};
