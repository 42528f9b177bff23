import { HubError } from '../errors.ts';

/** The stream's version did not match `expectedVersion`; nothing was appended. Wire code `conflict`. */
export class ConcurrencyError extends HubError {
  override name = 'ConcurrencyError';
  constructor(
    readonly stream: string,
    /** What the caller expected (a constant or a version). */
    readonly expected: string,
    /** The stream's version when checked; -1 when the stream does not exist, undefined when unknown. */
    readonly actual: bigint | undefined,
    options?: { cause?: unknown },
  ) {
    super('conflict', `stream ${stream}: expected version ${expected}, actual ${actual === undefined ? 'unknown' : actual === -1n ? 'no stream' : actual}`, options);
  }
}

/** The store cannot be reached; nothing was accepted (the caller may retry with the same idempotency key). */
export class EventStoreUnavailableError extends HubError {
  override name = 'EventStoreUnavailableError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('unavailable', message, options);
  }
}

/**
 * The group-commit queue, or this org's share of it, is full; nothing was queued. Wire code
 * `overloaded`; the caller may retry after `retryAfterMs` (with the same idempotency key).
 */
export class EventStoreOverloadedError extends HubError {
  override name = 'EventStoreOverloadedError';
  constructor(message: string, retryAfterMs: number) {
    super('overloaded', message, { retryAfterMs });
  }
}

/** An envelope failed `schemas/event-envelope.schema.json`, or another per-append rejection. */
export class InvalidEventError extends HubError {
  override name = 'InvalidEventError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('invalid', message, options);
  }
}

export const errors = { ConcurrencyError, EventStoreUnavailableError, EventStoreOverloadedError, InvalidEventError };
