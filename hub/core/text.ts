/**
 * Hostile-text rules, in one place. Two different jobs:
 *
 * - `findBadText` is the gate for anything a client asks the hub to record (command data, event
 *   metadata): it refuses, it never repairs, because a silently changed command is worse than a
 *   refused one. Postgres' jsonb rejects lone surrogates (`\ud800`) and U+0000, and a rejected
 *   literal fails the whole group-commit transaction, so both are caught here, before queueing.
 * - `sanitizeUntrusted` is for values the hub *reports* about someone else (client ids, user
 *   names, topics, user agents, reasons in audit events and logs): those are recorded even when
 *   hostile, so they are made safe instead: lone surrogates become U+FFFD, control characters are
 *   escaped as `\uXXXX`, and the result is clipped by code point.
 */

// ES2024 string methods (Node >= 20); the tsconfig's ES2022 lib does not declare them yet.
declare global {
  interface String {
    isWellFormed(): boolean;
    toWellFormed(): string;
  }
}

/** Caps for `findBadText`; a value over any of them is refused. */
export interface TextCaps {
  /** Longest string (UTF-16 code units); default 65536. */
  maxString: number;
  /** Longest object key; default 256. */
  maxKey: number;
  /** Deepest nesting of arrays/objects; default 32. */
  maxDepth: number;
}

export const DEFAULT_TEXT_CAPS: TextCaps = { maxString: 65536, maxKey: 256, maxDepth: 32 };

/** Why one string is refused, or undefined when it is fine. */
export function badString(s: string, max: number): string | undefined {
  if (s.length > max) return `is longer than ${max} characters`;
  if (!s.isWellFormed()) return 'is not well-formed Unicode (lone UTF-16 surrogate)';
  if (s.includes('\u0000')) return 'must not contain U+0000';
  return undefined;
}

/**
 * Walks a JSON value and returns the first problem as `<json pointer> <why>` (e.g.
 * `/reason is not well-formed Unicode (lone UTF-16 surrogate)`), or undefined when every string
 * and key is acceptable. Non-JSON leaves (functions, symbols) are left to the schema checks.
 * The pointer is built only for a problem: every appended event passes here, nearly all clean.
 */
export function findBadText(value: unknown, caps: TextCaps = DEFAULT_TEXT_CAPS, path = '', depth = 0): string | undefined {
  const bad = badTextIn(value, caps, depth);
  if (!bad) return undefined;
  let where = path;
  for (let i = bad.at.length - 1; i >= 0; i--) where += `/${bad.at[i]}`;
  return `${where || '/'} ${bad.why}`;
}

/** A problem found by `badTextIn`: where (JSON pointer segments, innermost first) and why. */
interface BadText {
  at: string[];
  why: string;
}

function badTextIn(value: unknown, caps: TextCaps, depth: number): BadText | undefined {
  if (typeof value === 'string') {
    const why = badString(value, caps.maxString);
    return why === undefined ? undefined : { at: [], why };
  }
  if (value === null || typeof value !== 'object') return undefined;
  if (depth >= caps.maxDepth) return { at: [], why: `is nested deeper than ${caps.maxDepth} levels` };
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const bad = badTextIn(value[i], caps, depth + 1);
      if (bad) {
        bad.at.push(String(i));
        return bad;
      }
    }
    return undefined;
  }
  for (const key of Object.keys(value)) {
    const kwhy = badString(key, caps.maxKey);
    if (kwhy) return { at: [pointerSegment(sanitizeUntrusted(key, 64)!)], why: `(key) ${kwhy}` };
    const bad = badTextIn((value as Record<string, unknown>)[key], caps, depth + 1);
    if (bad) {
      bad.at.push(pointerSegment(sanitizeUntrusted(key, 64)!));
      return bad;
    }
  }
  return undefined;
}

function pointerSegment(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** The first `n` code points of `s` (a surrogate pair is never split). */
export function clipCodePoints(s: string, n: number): string {
  if (s.length <= n) return s;
  let units = 0;
  let points = 0;
  while (units < s.length && points < n) {
    const c = s.charCodeAt(units);
    const pair = c >= 0xd800 && c <= 0xdbff && units + 1 < s.length && (s.charCodeAt(units + 1) & 0xfc00) === 0xdc00;
    units += pair ? 2 : 1;
    points++;
  }
  return s.slice(0, units);
}

// C0 controls, DEL and C1 controls; also the line/paragraph separators that break log lines.
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

/**
 * Makes a value from an untrusted source safe to record: lone surrogates become U+FFFD, control
 * characters are written as `\uXXXX`, and the result is clipped to `max` code points (with `…`
 * appended when clipped). `undefined` stays `undefined`; non-strings are stringified first.
 */
export function sanitizeUntrusted(s: unknown, max = 128): string | undefined {
  if (s === undefined) return undefined;
  const text = (typeof s === 'string' ? s : String(s)).toWellFormed();
  const escaped = text.replace(CONTROL, (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  const clipped = clipCodePoints(escaped, max);
  return clipped.length < escaped.length ? `${clipped}…` : clipped;
}

/**
 * Sanitises every string in an audit event's data (values and keys, nested objects and arrays),
 * so no hostile value can make the event unrecordable. Numbers and booleans pass as they are.
 */
export function sanitizeAuditData(data: Record<string, unknown>, max = 256, depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(data)) out[sanitizeUntrusted(k, 64)!] = sanitizeValue(v, max, depth + 1);
  return out;
}

function sanitizeValue(v: unknown, max: number, depth: number): unknown {
  if (typeof v === 'string') return sanitizeUntrusted(v, max);
  if (v === null || typeof v !== 'object') return typeof v === 'number' || typeof v === 'boolean' || v === null ? v : sanitizeUntrusted(v, max);
  if (depth > 8) return '[too deep]';
  if (Array.isArray(v)) return v.slice(0, 64).map((x) => sanitizeValue(x, max, depth + 1));
  return sanitizeAuditData(v as Record<string, unknown>, max, depth);
}
