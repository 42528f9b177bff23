import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parse as parseCsv } from 'csv-parse/sync';
import { HubError } from '../errors.ts';
import { decodeCursor, encodeCursor, DEFAULT_CURSOR_KEY } from './cursor.ts';
import { auditCsvHeader, auditCsvRows, escapeFormula } from './csv.ts';
import { parseId, parseQuery } from './filters.ts';
import { DEFAULT_LIMIT, type AuditEntry } from './readModels.ts';
import { auditSql, commandsSql, devicesSql, escapeLike, sessionsSql, toPage } from './sql.ts';

const invalid = (re: RegExp) => (err: unknown) => err instanceof HubError && err.code === 'invalid' && re.test(err.message);

describe('read-model filters', () => {
  it('filters - parse typed values, defaults and ignore access_token', () => {
    const q = parseQuery('devices', 'online=true&transport=ws&limit=5&access_token=x');
    assert.deepEqual(q, { filter: { online: true, transport: 'ws' }, limit: 5, cursor: undefined, format: undefined });
    assert.equal(parseQuery('audit', '').limit, DEFAULT_LIMIT);
    assert.deepEqual(parseQuery('audit', 'type=session.&from=2026-11-01T00:00:00Z&format=csv').filter, { type: 'session.', from: '2026-11-01T00:00:00Z' });
  });

  it('filters - refuse bad values with the parameter named and the value never echoed', () => {
    const cases: [string, string, RegExp][] = [
      ['audit', 'limit=1001', /"limit" must be <= 1000/],
      ['audit', 'actor=a%00b', /"actor" has characters that are not allowed/],
      ['audit', `actor=${'x'.repeat(257)}`, /"actor" must NOT have more than 256/],
      ['audit', 'outcome=%27%20OR%201%3D1', /"outcome" has characters/],
      ['audit', 'from=now', /"from" must be an RFC 3339 date-time/],
      ['audit', 'from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z', /"from" must be before "to"/],
      ['devices', 'online=maybe', /"online" must be boolean/],
      ['sessions', 'state=gone', /"state" must be one of open, closed/],
      ['commands', 'drop=1', /unknown query parameter "drop"/],
      ['commands', 'type=a&type=b', /"type" is given more than once/],
      ['audit', 'cursor=abc', /"cursor" has characters/],
    ];
    for (const [listing, query, re] of cases) {
      assert.throws(() => parseQuery(listing as 'audit', query), invalid(re), query);
    }
    assert.throws(() => parseQuery('audit', 'actor=topsecret%01'), (err: unknown) => err instanceof HubError && !err.message.includes('topsecret'));
  });

  it('filters - path ids decode percent-encoding and refuse controls', () => {
    assert.equal(parseId('d%2F1'), 'd/1');
    assert.equal(parseId('%C5%81%C3%B3d%C5%BA'), 'Łódź');
    assert.throws(() => parseId('a%00b'), invalid(/printable/));
    assert.throws(() => parseId('%E0%A4%A'), invalid(/percent-encoding/));
    assert.throws(() => parseId('%ED%A0%80'), invalid(/percent-encoding/), 'a lone surrogate');
    assert.throws(() => parseId('x'.repeat(257)), invalid(/1-256/));
  });
});

describe('read-model cursors', () => {
  const scope = { listing: 'audit', org: 'org-a', filter: { actor: 'x', type: undefined } };
  const pos = { at: '2026-11-30T12:00:00.123456Z', id: '6970204f-b614-487f-ad4f-d05d2492fa0b' };

  it('cursor - round-trips and is stable; key order and undefined filters do not matter', () => {
    const c = encodeCursor(DEFAULT_CURSOR_KEY, scope, pos);
    assert.equal(c, encodeCursor(DEFAULT_CURSOR_KEY, { ...scope, filter: { type: undefined, actor: 'x' } }, pos));
    assert.deepEqual(decodeCursor(DEFAULT_CURSOR_KEY, { ...scope, filter: { actor: 'x' } }, c), pos);
  });

  it('cursor - any edit, another org, listing, filter or key is refused alike', () => {
    const c = encodeCursor(DEFAULT_CURSOR_KEY, scope, pos);
    const bad = invalid(/cursor is invalid/);
    for (let i = 0; i < c.length; i++) {
      if (c[i] === '.') continue;
      const flipped = c.slice(0, i) + (c[i] === 'A' ? 'B' : 'A') + c.slice(i + 1);
      assert.throws(() => decodeCursor(DEFAULT_CURSOR_KEY, scope, flipped), bad, `edit at ${i}`);
    }
    assert.throws(() => decodeCursor(DEFAULT_CURSOR_KEY, { ...scope, org: 'org-b' }, c), bad);
    assert.throws(() => decodeCursor(DEFAULT_CURSOR_KEY, { ...scope, listing: 'devices' }, c), bad);
    assert.throws(() => decodeCursor(DEFAULT_CURSOR_KEY, { ...scope, filter: { actor: 'y' } }, c), bad);
    assert.throws(() => decodeCursor('another-key', scope, c), bad);
    assert.throws(() => decodeCursor(DEFAULT_CURSOR_KEY, scope, c.slice(0, -1)), bad);
    assert.throws(() => decodeCursor(DEFAULT_CURSOR_KEY, scope, `${c}.x`), bad);
  });
});

describe('read-model CSV', () => {
  it('csv - formula-leading cells get a quote prefix; others are untouched', () => {
    for (const s of ['=1+1', '+1', '-1', '@SUM(A1)', '\tx', '\rx']) assert.equal(escapeFormula(s), `'${s}`);
    for (const s of ['a=1', '', ' =1', '1-2', "'=already"]) assert.equal(escapeFormula(s), s);
  });

  it('csv - rows round-trip through a CSV parser with quoting, nulls and JSON data', () => {
    const e: AuditEntry = {
      id: 'i', recordedAt: 't', globalPosition: '1', type: 'publish.denied', actor: '=HYPERLINK("http://x","y")', session: null,
      topic: 'a,b', outcome: 'denied', correlationId: 'line\nbreak', node: null, data: { k: '"q"' },
    };
    const rows = parseCsv(auditCsvHeader() + auditCsvRows([e, { ...e, data: '{"raw":1}' }]));
    assert.equal(rows.length, 3);
    assert.equal(rows[1][4], `'=HYPERLINK("http://x","y")`);
    assert.equal(rows[1][5], '');
    assert.equal(rows[1][6], 'a,b');
    assert.equal(rows[1][8], 'line\nbreak');
    assert.deepEqual(JSON.parse(rows[1][10]), { k: '"q"' });
    assert.equal(rows[2][10], '{"raw":1}', 'data already as JSON text is written as is');
  });
});

describe('read-model SQL', () => {
  it('sql - every value is a bind parameter; LIKE metacharacters are escaped', () => {
    const hostile = "x' OR 1=1 --";
    const q = auditSql('org-a', { actor: hostile, type: '50%_\\', topic: hostile, outcome: 'ok', from: '2026-01-01T00:00:00Z', to: '2026-02-01T00:00:00Z', correlationId: hostile }, { limit: 10, after: { at: '2026-01-01T00:00:00.000000Z', id: hostile } });
    assert.ok(!q.text.includes(hostile) && !q.text.includes('50%'), q.text);
    assert.deepEqual(q.values.slice(0, 3), ['org-a', hostile, '50\\%\\_\\\\%']);
    assert.equal(q.values.at(-1), 11, 'one more row than the page, to learn whether more follow');
    assert.match(q.text, /ORDER BY recorded_at DESC, audit_log\.id DESC/);
    assert.match(auditSql('o', { order: 'asc' }, { limit: 1, after: { at: 'a', id: 'b' } }).text, /\(recorded_at, audit_log\.id\) > \(\$2::timestamptz, \$3::uuid\)/);
    for (const q2 of [devicesSql('o', { transport: hostile }, { limit: 1 }), sessionsSql('o', { actor: hostile }, { limit: 1 }), commandsSql('o', { device: hostile }, { limit: 1 })]) {
      assert.ok(!q2.text.includes(hostile));
      assert.match(q2.text, /WHERE org_id = \$1 AND/);
    }
    assert.equal(escapeLike('a_b%c\\'), 'a\\_b\\%c\\\\');
  });

  it('sql - toPage strips positions and yields the next one only when a row more came back', () => {
    const rows = [1, 2, 3].map((i) => ({ id: `r${i}`, _at: `t${i}`, _id: `r${i}` }));
    assert.deepEqual(toPage(rows, 2), { items: [{ id: 'r1' }, { id: 'r2' }], next: { at: 't2', id: 'r2' } });
    assert.deepEqual(toPage(rows, 3), { items: [{ id: 'r1' }, { id: 'r2' }, { id: 'r3' }] });
  });
});
