import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { clipCodePoints, findBadText, sanitizeAuditData, sanitizeUntrusted } from './text.ts';

describe('text', () => {
  it('text - findBadText should name the path of a lone surrogate, a NUL, an over-long string or key, and too deep nesting', () => {
    assert.equal(findBadText({ reason: 'fine', n: 1, list: ['ok', { x: null }] }), undefined);
    assert.equal(findBadText({ reason: 'x\ud800y' }), '/reason is not well-formed Unicode (lone UTF-16 surrogate)');
    assert.equal(findBadText({ a: ['ok', 'lo\udc00w'] }, undefined, 'data'), 'data/a/1 is not well-formed Unicode (lone UTF-16 surrogate)');
    assert.equal(findBadText({ s: { t: 'a\u0000b' } }), '/s/t must not contain U+0000');
    assert.equal(findBadText('x'.repeat(11), { maxString: 10, maxKey: 5, maxDepth: 4 }), '/ is longer than 10 characters');
    assert.match(findBadText({ ['k'.repeat(6)]: 1 }, { maxString: 10, maxKey: 5, maxDepth: 4 })!, /\(key\) is longer than 5 characters/);
    assert.match(findBadText({ ['k\ud800']: 1 })!, /\(key\) is not well-formed/);
    assert.match(findBadText([[[[[1]]]]], { maxString: 10, maxKey: 5, maxDepth: 4 })!, /nested deeper than 4/);
    // a proper pair is fine
    assert.equal(findBadText({ emoji: '\u{1F600}' }), undefined);
  });

  it('text - findBadText should give the whole JSON pointer of a problem deep inside, keys escaped (~0, ~1) and sanitised', () => {
    const caps = { maxString: 10, maxKey: 5, maxDepth: 4 };
    assert.equal(findBadText({ ok: 'x', 'a/b': [{ fine: 1 }, { 'c~d': ['y', 'z\u0000'] }] }, undefined, '/data'), '/data/a~1b/1/c~0d/1 must not contain U+0000');
    assert.equal(findBadText({ a: { 'k/k/k/': 1 } }, caps, '/m'), '/m/a/k~1k~1k~1 (key) is longer than 5 characters');
    assert.equal(findBadText({ a: { 'x\ud800': 1 } }), '/a/x\ufffd (key) is not well-formed Unicode (lone UTF-16 surrogate)');
    assert.equal(findBadText({ a: { ['k'.repeat(6)]: 1 } }, caps, '/m'), `/m/a/${'k'.repeat(6)} (key) is longer than 5 characters`);
    assert.equal(findBadText({ a: [{ b: [[1]] }] }, caps, '/m'), '/m/a/0/b/0 is nested deeper than 4 levels');
    assert.equal(findBadText({ a: [{ b: 'v'.repeat(11) }] }, caps), '/a/0/b is longer than 10 characters');
  });

  it('text - clipCodePoints should count code points and never cut a pair', () => {
    assert.equal(clipCodePoints('ab\u{1F600}cd', 3), 'ab\u{1F600}');
    assert.equal(clipCodePoints('ab\u{1F600}cd', 2), 'ab');
    assert.equal(clipCodePoints('short', 10), 'short');
    // a lone surrogate counts as one code point
    assert.equal(clipCodePoints('\ud800\ud800x', 2), '\ud800\ud800');
  });

  it('text - sanitizeUntrusted should escape controls, repair lone surrogates and clip with an ellipsis', () => {
    assert.equal(sanitizeUntrusted(undefined), undefined);
    assert.equal(sanitizeUntrusted('a\u0000b\u001b[31m\u2028'), 'a\\u0000b\\u001b[31m\\u2028');
    assert.equal(sanitizeUntrusted('x\ud800'), 'x\ufffd');
    assert.equal(sanitizeUntrusted('\u{1F600}'.repeat(5), 3), `${'\u{1F600}'.repeat(3)}…`);
    assert.ok(sanitizeUntrusted(`${'a'.repeat(127)}\u{1F600}`, 128)!.isWellFormed());
    assert.equal(sanitizeUntrusted(42), '42');
  });

  it('text - sanitizeAuditData should make every nested string and key recordable and keep numbers', () => {
    const out = sanitizeAuditData({ clientId: 'c\u0000\ud800', n: 3, ok: true, nested: { ['k\ud800']: ['x\u0007'] } });
    assert.deepEqual(out, { clientId: 'c\\u0000\ufffd', n: 3, ok: true, nested: { 'k\ufffd': ['x\\u0007'] } });
    assert.equal(findBadText(out), undefined);
  });
});
