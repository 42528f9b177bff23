/**
 * Topic grammar and the topic <-> NATS subject mapping.
 *
 * A topic is org-relative and `/`-separated (`devices/d-42/telemetry`):
 * - segments: 1..64 chars of `[A-Za-z0-9_\-~:=@]`; the FIRST segment may start with `$`, which marks a
 *   system topic (`$presence/...`); `$` alone is not a segment;
 * - 1..16 segments, total length ≤ 256, no empty segments.
 * Every valid topic maps 1:1 onto NATS subject tokens (`hub.<org>.<seg>...`): no token can carry `.`,
 * `*`, `>`, whitespace or control chars.
 *
 * Patterns (subscriptions, grants) also allow:
 * - `+`: exactly one whole segment (NATS `*`);
 * - `#`: only as the whole LAST segment; matches ONE OR MORE remaining segments (NATS `>`).
 *   Unlike MQTT, `a/#` does NOT match `a` itself: fan-out runs on NATS subjects, where `hub.o.a.>`
 *   does not match `hub.o.a`, so the hub uses the NATS meaning everywhere to stay consistent.
 * - A pattern whose first segment is `+` or `#` never matches a `$` system topic (MQTT rule); system
 *   topics must be named literally in the first segment (`$presence/#`).
 *
 * All functions here are pure and allocation-light: validation scans the string once by char code.
 */
import { HubError } from '../errors.ts';

export const MAX_TOPIC_LENGTH = 256;
export const MAX_TOPIC_DEPTH = 16;
export const MAX_SEGMENT_LENGTH = 64;
export const MAX_ORG_LENGTH = 64;
export const SUBJECT_PREFIX = 'hub.';

const SLASH = 47; // '/'
const DOT = 46; // '.'
const PLUS = 43; // '+'
const HASH = 35; // '#'
const DOLLAR = 36; // '$'

/** 1 for chars of the segment alphabet `[A-Za-z0-9_\-~:=@]`, 2 also for org ids `[A-Za-z0-9_-]`. */
const CHAR = new Uint8Array(128);
for (let c = 48; c <= 57; c++) CHAR[c] = 3;
for (let c = 65; c <= 90; c++) CHAR[c] = 3;
for (let c = 97; c <= 122; c++) CHAR[c] = 3;
CHAR[95] = 3; // _
CHAR[45] = 3; // -
CHAR[126] = 1; // ~
CHAR[58] = 1; // :
CHAR[61] = 1; // =
CHAR[64] = 1; // @

// Scan results; 0 is valid. A number, so the boolean variants allocate nothing.
const OK = 0;
const NOT_STRING = 1;
const EMPTY = 2;
const TOO_LONG = 3;
const EMPTY_SEGMENT = 4;
const SEGMENT_TOO_LONG = 5;
const TOO_DEEP = 6;
const BAD_CHAR = 7;
const WILDCARD_IN_TOPIC = 8;
const DOLLAR_NOT_FIRST = 9;
const DOLLAR_ALONE = 10;
const WILDCARD_PARTIAL = 11;
const HASH_NOT_LAST = 12;

/** Position (char index, or segment number for segment faults) of the last fault found by `scan`. */
let faultAt = 0;

/**
 * Validates `s[start..]` as a topic (or a pattern when `wild`), with `sep` as the separator
 * ('/' for topics, '.' for NATS subject tokens). Returns OK or a fault code, setting `faultAt`.
 */
function scan(s: string, start: number, sep: number, wild: boolean): number {
  const end = s.length;
  const len = end - start;
  if (len === 0) return EMPTY;
  if (len > MAX_TOPIC_LENGTH) return TOO_LONG;
  let depth = 1;
  let i = start;
  for (;;) {
    // At the start of segment `depth`.
    const segStart = i;
    let c = i < end ? s.charCodeAt(i) : sep;
    if (c === PLUS || c === HASH) {
      faultAt = i;
      if (!wild) return WILDCARD_IN_TOPIC;
      i++;
      if (i < end && s.charCodeAt(i) !== sep) {
        faultAt = depth;
        return WILDCARD_PARTIAL;
      }
      if (c === HASH && i < end) {
        faultAt = depth;
        return HASH_NOT_LAST;
      }
    } else {
      if (c === DOLLAR) {
        if (depth !== 1) {
          faultAt = i;
          return DOLLAR_NOT_FIRST;
        }
        i++;
      }
      // Hot loop: alphabet chars only.
      while (i < end) {
        c = s.charCodeAt(i);
        if (c >= 128 || CHAR[c] === 0) break;
        i++;
      }
      if (i < end && c !== sep) {
        faultAt = i;
        if (c === DOLLAR) return DOLLAR_NOT_FIRST;
        if (c === PLUS || c === HASH) {
          if (!wild) return WILDCARD_IN_TOPIC;
          faultAt = depth;
          return WILDCARD_PARTIAL;
        }
        return BAD_CHAR;
      }
      const segLen = i - segStart;
      if (segLen === 0) {
        faultAt = depth;
        return EMPTY_SEGMENT;
      }
      if (segLen > MAX_SEGMENT_LENGTH) {
        faultAt = depth;
        return SEGMENT_TOO_LONG;
      }
      if (segLen === 1 && s.charCodeAt(segStart) === DOLLAR) {
        faultAt = depth;
        return DOLLAR_ALONE;
      }
    }
    if (i >= end) return OK;
    i++; // the separator
    if (++depth > MAX_TOPIC_DEPTH) return TOO_DEEP;
  }
}

function codePoint(s: string, i: number): string {
  const cp = s.codePointAt(i) ?? 0;
  // Shown as U+XXXX, never echoed raw: the input may hold control chars or lookalikes.
  return `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
}

function describe(kind: 'topic' | 'pattern', code: number, s: unknown): string {
  switch (code) {
    case NOT_STRING:
      return `${kind} must be a string`;
    case EMPTY:
      return `${kind} is empty`;
    case TOO_LONG:
      return `${kind} is longer than ${MAX_TOPIC_LENGTH} characters`;
    case EMPTY_SEGMENT:
      return `${kind} has an empty segment ${faultAt} (leading, trailing or double '/')`;
    case SEGMENT_TOO_LONG:
      return `${kind} segment ${faultAt} is longer than ${MAX_SEGMENT_LENGTH} characters`;
    case TOO_DEEP:
      return `${kind} has more than ${MAX_TOPIC_DEPTH} segments`;
    case BAD_CHAR:
      return `${kind} has invalid character ${codePoint(s as string, faultAt)} at position ${faultAt}; segments use A-Z a-z 0-9 _ - ~ : = @`;
    case WILDCARD_IN_TOPIC:
      return `${kind} has a wildcard at position ${faultAt}; '+' and '#' are only allowed in subscription patterns`;
    case DOLLAR_NOT_FIRST:
      return `${kind} has '$' at position ${faultAt}; '$' may only start the first segment`;
    case DOLLAR_ALONE:
      return `${kind} segment ${faultAt} is a bare '$'; a system topic needs a name after '$'`;
    case WILDCARD_PARTIAL:
      return `${kind} segment ${faultAt} mixes a wildcard with other characters; '+' and '#' must fill a whole segment`;
    case HASH_NOT_LAST:
      return `${kind} segment ${faultAt} is '#' but not the last segment`;
    default:
      return `${kind} is invalid`;
  }
}

/** True for a valid concrete topic (no wildcards). Never throws, allocates nothing. */
export function isValidTopic(t: unknown): t is string {
  return typeof t === 'string' && scan(t, 0, SLASH, false) === OK;
}

/** True for a valid pattern (a topic, or one using `+` / a final `#`). Never throws, allocates nothing. */
export function isValidPattern(p: unknown): p is string {
  return typeof p === 'string' && scan(p, 0, SLASH, true) === OK;
}

/** Splits a concrete topic into segments; throws HubError('bad_topic') naming the fault. */
export function parseTopic(t: unknown): string[] {
  const code = typeof t === 'string' ? scan(t, 0, SLASH, false) : NOT_STRING;
  if (code !== OK) throw new HubError('bad_topic', describe('topic', code, t));
  return (t as string).split('/');
}

/** Splits a pattern into segments (`+`, `#` kept as is); throws HubError('bad_topic') naming the fault. */
export function parsePattern(p: unknown): string[] {
  const code = typeof p === 'string' ? scan(p, 0, SLASH, true) : NOT_STRING;
  if (code !== OK) throw new HubError('bad_topic', describe('pattern', code, p));
  return (p as string).split('/');
}

/** Throws HubError('bad_topic') unless `t` is a valid topic; returns it typed as a string. */
export function assertTopic(t: unknown): string {
  const code = typeof t === 'string' ? scan(t, 0, SLASH, false) : NOT_STRING;
  if (code !== OK) throw new HubError('bad_topic', describe('topic', code, t));
  return t as string;
}

/** Throws HubError('bad_topic') unless `p` is a valid pattern; returns it typed as a string. */
export function assertPattern(p: unknown): string {
  const code = typeof p === 'string' ? scan(p, 0, SLASH, true) : NOT_STRING;
  if (code !== OK) throw new HubError('bad_topic', describe('pattern', code, p));
  return p as string;
}

/** Org ids: `[A-Za-z0-9_-]{1,64}`. */
export function isValidOrgId(org: unknown): org is string {
  if (typeof org !== 'string') return false;
  return orgEnd(org, 0, org.length) === org.length;
}

/** Scans an org id from `start`; returns the index where it stops, or -1 if too long/empty. */
function orgEnd(s: string, start: number, stop: number): number {
  let i = start;
  for (; i < stop; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || (CHAR[c] & 2) === 0) break;
  }
  const len = i - start;
  return len === 0 || len > MAX_ORG_LENGTH ? -1 : i;
}

/** True when `s` can be used as one plain segment (not `$`-prefixed, no wildcard): used for `{sub}`. */
export function isPlainSegment(s: unknown): s is string {
  if (typeof s !== 'string' || s.length === 0 || s.length > MAX_SEGMENT_LENGTH) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || CHAR[c] === 0) return false;
  }
  return true;
}

/** True for a `$`-prefixed system topic or pattern. */
export function isSystemTopic(topic: string): boolean {
  return topic.charCodeAt(0) === DOLLAR;
}

function assertOrg(org: unknown): asserts org is string {
  if (!isValidOrgId(org)) throw new HubError('bad_topic', 'org id must match [A-Za-z0-9_-]{1,64}');
}

/** `devices/d1/x` in org `acme` → `hub.acme.devices.d1.x`. Throws HubError('bad_topic') on bad input. */
export function topicToSubject(org: string, topic: string): string {
  assertOrg(org);
  assertTopic(topic);
  return SUBJECT_PREFIX + org + '.' + topic.replaceAll('/', '.');
}

/** `devices/+/#` in org `acme` → `hub.acme.devices.*.>`. Throws HubError('bad_topic') on bad input. */
export function patternToSubject(org: string, pattern: string): string {
  assertOrg(org);
  assertPattern(pattern);
  let s = pattern.replaceAll('/', '.');
  // The grammar guarantees '+' and '#' only ever appear as whole segments.
  if (s.includes('+')) s = s.replaceAll('+', '*');
  if (s.charCodeAt(s.length - 1) === HASH) s = s.slice(0, -1) + '>';
  return SUBJECT_PREFIX + org + '.' + s;
}

/**
 * `hub.acme.devices.d1.x` → `{ org: 'acme', topic: 'devices/d1/x' }`. Returns undefined for anything
 * not under `hub.`, for a bad org token, and for tokens failing the topic grammar (raw NATS publishers
 * can publish junk subjects, including wildcard-looking ones).
 */
export function subjectToTopic(subject: string): { org: string; topic: string } | undefined {
  if (typeof subject !== 'string' || !subject.startsWith(SUBJECT_PREFIX)) return undefined;
  const start = SUBJECT_PREFIX.length;
  const end = orgEnd(subject, start, subject.length);
  if (end < 0 || end >= subject.length || subject.charCodeAt(end) !== DOT) return undefined;
  if (scan(subject, end + 1, DOT, false) !== OK) return undefined;
  return {
    org: subject.slice(start, end),
    topic: subject.slice(end + 1).replaceAll('.', '/'),
  };
}

/**
 * Whether `topic` matches `pattern`; both must already be valid. `+` matches one segment, a final `#`
 * one or more (so `a/#` does not match `a`), and a pattern starting with `+`/`#` never matches a `$`
 * topic. Walks both strings in place: no split, no allocation.
 */
export function matches(pattern: string, topic: string): boolean {
  const p0 = pattern.charCodeAt(0);
  if ((p0 === PLUS || p0 === HASH) && topic.charCodeAt(0) === DOLLAR) return false;
  const pl = pattern.length;
  const tl = topic.length;
  let i = 0;
  let j = 0;
  for (;;) {
    // i and j are at the start of a segment in pattern and topic.
    const c = pattern.charCodeAt(i);
    // `#` is always last and the topic segment at j is non-empty: one or more segments remain.
    if (c === HASH) return true;
    if (c === PLUS) {
      i++;
      while (j < tl && topic.charCodeAt(j) !== SLASH) j++;
    } else {
      for (; i < pl; i++, j++) {
        const pc = pattern.charCodeAt(i);
        if (pc === SLASH) break;
        if (j >= tl || topic.charCodeAt(j) !== pc) return false;
      }
      if (j < tl && topic.charCodeAt(j) !== SLASH) return false;
    }
    // Both at a '/' or at their end.
    if (i >= pl || j >= tl) return i >= pl && j >= tl;
    i++;
    j++;
  }
}
