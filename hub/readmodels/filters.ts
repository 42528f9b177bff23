/**
 * Query-string filters of the read-model endpoints, validated with ajv before anything reaches SQL
 * (pure). A bad filter is a HubError `invalid` naming the parameter and the rule it broke; the
 * message never echoes a value, so nothing a caller sent (or SQL) comes back in an error.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { HubError } from '../errors.ts';
import { DEFAULT_LIMIT, MAX_LIMIT, type AuditFilter, type CommandFilter, type DeviceFilter, type SessionFilter } from './readModels.ts';

// ajv-formats is CommonJS; under ESM its default export may arrive wrapped.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (ajv: Ajv) => Ajv;

/** Printable text: no C0 controls (NUL cannot be stored in Postgres text anyway) and no DEL. */
const TEXT = '^[^\\u0000-\\u001f\\u007f]*$';
const text = (max: number) => ({ type: 'string', minLength: 1, maxLength: max, pattern: TEXT });
/** Short machine words: outcome, status, transport. */
const word = { type: 'string', pattern: '^[A-Za-z0-9_.:-]{1,64}$' };
const time = { type: 'string', format: 'date-time', maxLength: 64 };
const paging = {
  limit: { type: 'integer', minimum: 1, maximum: MAX_LIMIT, default: DEFAULT_LIMIT },
  cursor: { type: 'string', minLength: 1, maxLength: 1024, pattern: '^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$' },
};

const schemas = {
  audit: {
    actor: text(256),
    type: text(128),
    topic: text(1024),
    outcome: word,
    from: time,
    to: time,
    correlationId: text(256),
    order: { enum: ['asc', 'desc'] },
    format: { enum: ['json', 'csv'] },
  },
  devices: { online: { type: 'boolean' }, transport: word, seenSince: time },
  sessions: { device: text(256), actor: text(256), transport: word, state: { enum: ['open', 'closed'] }, from: time, to: time },
  commands: { device: text(256), type: text(128), status: word, from: time, to: time },
} as const;

export type Listing = keyof typeof schemas;

export interface ParsedQuery<F> {
  filter: F;
  limit: number;
  cursor?: string;
  format?: 'json' | 'csv';
}

const ajv = new Ajv({ coerceTypes: true, useDefaults: true, allErrors: false, strict: true });
addFormats(ajv);
const validators = Object.fromEntries(
  Object.entries(schemas).map(([name, props]) => [name, ajv.compile({ type: 'object', properties: { ...props, ...paging }, additionalProperties: false })]),
) as Record<Listing, ValidateFunction>;

/** Query parameters that are not filters: the token may travel in the query (DESIGN.md). */
const TRANSPORT_PARAMS = new Set(['access_token']);

/** A parameter name as it may appear in a message: short and quoted, whatever was sent. */
function nameOf(s: string): string {
  return JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}…` : s);
}

function describe(e: ErrorObject): string {
  if (e.keyword === 'additionalProperties') return `unknown query parameter ${nameOf(String(e.params.additionalProperty))}`;
  const name = nameOf(e.instancePath.replace(/^\//, ''));
  switch (e.keyword) {
    case 'pattern':
      return `query parameter ${name} has characters that are not allowed`;
    case 'format':
      return `query parameter ${name} must be an RFC 3339 date-time (e.g. 2026-11-30T12:00:00Z)`;
    case 'enum':
      return `query parameter ${name} must be one of ${(e.params.allowedValues as string[]).join(', ')}`;
    default:
      return `query parameter ${name} ${e.message ?? 'is invalid'}`;
  }
}

/**
 * Parses the raw query string of a listing into a typed filter. Throws HubError `invalid` on an
 * unknown or repeated parameter, a value out of its rules, or a `from` not before `to`.
 */
export function parseQuery<F = AuditFilter | DeviceFilter | SessionFilter | CommandFilter>(listing: Listing, query: string): ParsedQuery<F> {
  let params: URLSearchParams;
  try {
    params = new URLSearchParams(query);
  } catch {
    throw new HubError('invalid', 'query string is malformed');
  }
  const raw: Record<string, unknown> = {};
  for (const [k, v] of params) {
    if (TRANSPORT_PARAMS.has(k)) continue;
    if (Object.hasOwn(raw, k)) throw new HubError('invalid', `query parameter ${nameOf(k)} is given more than once`);
    raw[k] = v;
  }
  const validate = validators[listing];
  if (!validate(raw)) throw new HubError('invalid', describe(validate.errors![0]));
  const { limit, cursor, format, ...filter } = raw as Record<string, unknown> & { limit: number; cursor?: string; format?: 'json' | 'csv' };
  const f = filter as { from?: string; to?: string };
  if (f.from !== undefined && f.to !== undefined && Date.parse(f.from) >= Date.parse(f.to)) {
    throw new HubError('invalid', 'query parameter "from" must be before "to"');
  }
  return { filter: filter as F, limit, cursor, format };
}

/** A path id (`/v1/devices/{id}`): the same text rule as the filters. Throws HubError `invalid`. */
export function parseId(raw: string): string {
  let id: string;
  try {
    id = decodeURIComponent(raw);
  } catch {
    throw new HubError('invalid', 'device id is not valid percent-encoding');
  }
  if (id.length === 0 || id.length > 256 || !new RegExp(TEXT, 'u').test(id)) {
    throw new HubError('invalid', 'device id must be 1-256 printable characters');
  }
  return id;
}
