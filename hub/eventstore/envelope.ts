import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { uuidv7 } from './uuidv7.ts';
import type { NewEvent, EventMetadata, RecordedEvent } from './eventStore.ts';
import { formatPosition } from './eventStore.ts';
import { InvalidEventError } from './errors.ts';

/** The envelope schema, compiled once per process. */
export const envelopeSchema = JSON.parse(readFileSync(new URL('../../schemas/event-envelope.schema.json', import.meta.url), 'utf8')) as object;

const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;
const ajv = new Ajv({ allErrors: false, strict: true });
addFormats(ajv);
const validateEnvelope = ajv.compile(envelopeSchema);

/** `\u0000` in JSON text, not preceded by an escaping backslash. */
const NUL_ESCAPE = /(?:^|[^\\])(?:\\\\)*\\u0000/;

/** An event ready to append: id and schemaVersion filled in, validated against the envelope schema. */
export interface PreparedEvent {
  id: string;
  type: string;
  schemaVersion: number;
  data: unknown;
  metadata: EventMetadata;
}

/** Fills defaults and validates; throws InvalidEventError with the schema's message. */
export function prepareEvents(org: string, stream: string, events: readonly NewEvent[]): PreparedEvent[] {
  if (!Array.isArray(events) || events.length === 0) throw new InvalidEventError('appendToStream needs at least one event');
  return events.map((e, i) => {
    const env = {
      id: e.id ?? uuidv7(),
      org,
      stream,
      type: e.type,
      schemaVersion: e.schemaVersion ?? 1,
      data: e.data === undefined ? null : e.data,
      metadata: e.metadata,
    };
    if (!validateEnvelope(env)) {
      const err = validateEnvelope.errors?.[0];
      const where = err ? `${err.instancePath || '/'} ${err.message}` : 'invalid';
      throw new InvalidEventError(`event ${i} (${String(e.type)}): ${where}`);
    }
    // Postgres jsonb cannot hold U+0000; refuse it here so it fails this append, not a whole batch.
    if (NUL_ESCAPE.test(JSON.stringify(env.data)) || NUL_ESCAPE.test(JSON.stringify(env.metadata))) {
      throw new InvalidEventError(`event ${i} (${e.type}): strings must not contain U+0000`);
    }
    return { id: env.id, type: env.type, schemaVersion: env.schemaVersion, data: env.data, metadata: env.metadata };
  });
}

/** The JSON form of a recorded event, as described by schemas/event-envelope.schema.json. */
export function toEnvelope(e: RecordedEvent): Record<string, unknown> {
  return {
    id: e.id,
    org: e.org,
    stream: e.stream,
    type: e.type,
    schemaVersion: e.schemaVersion,
    data: e.data,
    metadata: e.metadata,
    recordedAt: e.recordedAt,
    streamPosition: Number(e.streamPosition),
    position: formatPosition(e.position),
  };
}

/** True when `e` matches the envelope schema (for tests and consumers of exported envelopes). */
export function isValidEnvelope(e: unknown): boolean {
  return validateEnvelope(e) as boolean;
}
