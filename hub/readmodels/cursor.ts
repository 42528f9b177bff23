/**
 * Opaque page cursors (pure). A cursor is `<payload>.<tag>`, both base64url: the payload holds the
 * keyset position (sort timestamp and id) of the last row served, the tag is an HMAC-SHA-256 over
 * the payload AND what the cursor belongs to (listing, org, filter). So a cursor that was edited,
 * truncated, or replayed against another listing, another filter or another org's token is refused
 * with `invalid`, exactly alike, and says nothing about why.
 *
 * The tag is integrity, not secrecy and not isolation: the position is readable, and isolation rests
 * on RLS (a forged position inside one's own org can only show one's own rows). The key is shared
 * by all nodes through ORGHUB_QUERY_CURSOR_KEY so cursors stay valid across nodes and restarts; the
 * built-in default suffices for that.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { HubError } from '../errors.ts';
import type { Position } from './readModels.ts';

export const DEFAULT_CURSOR_KEY = 'orghub-query-cursor-v1';

/** What a cursor is bound to; the filter excludes `limit`, which may change from page to page. */
export interface CursorScope {
  listing: string;
  org: string;
  filter: object;
}

const ISO_US = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
const TAG_BYTES = 16;
const invalid = () => new HubError('invalid', 'cursor is invalid: pass back a nextCursor unchanged, with the same filters');

/** A stable text of the filter: keys sorted, undefined dropped. */
function canonical(filter: object): string {
  const entries = Object.entries(filter).filter(([, v]) => v !== undefined);
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify(entries);
}

function tag(key: string, scope: CursorScope, payload: string): Buffer {
  const h = createHmac('sha256', key);
  // NUL separates fields: none of them can contain one (filters refuse controls, org ids are segments).
  h.update(`v1\u0000${scope.listing}\u0000${scope.org}\u0000${canonical(scope.filter)}\u0000${payload}`);
  return h.digest().subarray(0, TAG_BYTES);
}

export function encodeCursor(key: string, scope: CursorScope, pos: Position): string {
  const payload = Buffer.from(JSON.stringify([pos.at, pos.id])).toString('base64url');
  return `${payload}.${tag(key, scope, payload).toString('base64url')}`;
}

/** The position a cursor holds. Throws HubError `invalid` on any mismatch or damage. */
export function decodeCursor(key: string, scope: CursorScope, cursor: string): Position {
  const dot = cursor.indexOf('.');
  if (dot <= 0 || dot !== cursor.lastIndexOf('.')) throw invalid();
  const payload = cursor.slice(0, dot);
  // Compared as text, not as decoded bytes: base64url decoding ignores spare low bits, so two
  // different strings can decode alike, and an edited cursor must never pass.
  const got = Buffer.from(cursor.slice(dot + 1));
  const want = Buffer.from(tag(key, scope, payload).toString('base64url'));
  if (got.length !== want.length || !timingSafeEqual(got, want)) throw invalid();
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    throw invalid();
  }
  if (!Array.isArray(parsed) || parsed.length !== 2) throw invalid();
  const [at, id] = parsed as unknown[];
  if (typeof at !== 'string' || !ISO_US.test(at) || typeof id !== 'string' || id.length === 0 || id.length > 256) throw invalid();
  return { at, id };
}
