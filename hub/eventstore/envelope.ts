import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { uuidv7 } from './uuidv7.ts';
import type { NewEvent, EventMetadata, RecordedEvent } from './eventStore.ts';
import { formatPosition } from './eventStore.ts';
import { InvalidEventError } from './errors.ts';
import { badString, findBadText } from '../core/text.ts';

/** The envelope schema, compiled once per process. */
export const envelopeSchema = JSON.parse(readFileSync(new URL('../../schemas/event-envelope.schema.json', import.meta.url), 'utf8')) as object;

const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;
const ajv = new Ajv({ allErrors: false, strict: true });
addFormats(ajv);
const validateEnvelope = ajv.compile(envelopeSchema);


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
  const badStream = badString(stream, 512);
  if (badStream) throw new InvalidEventError(`stream name ${badStream}`);
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
    // Postgres rejects U+0000 and lone surrogates (jsonb, text), and a rejected literal fails the
    // whole group-commit transaction: refuse them here, so only this append fails, before queueing.
    const bad = findBadText(env.data, undefined, '/data') ?? findBadText(env.metadata, undefined, '/metadata');
    if (bad) throw new InvalidEventError(`event ${i} (${e.type}): ${bad}`);
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
