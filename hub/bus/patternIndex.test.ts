import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { matches } from '../acl/topic.ts';
import { PatternIndex } from './patternIndex.ts';

const PATTERNS = ['#', '+', 'a', 'a/#', 'a/+', 'a/b', 'a/+/c', '+/b/#', 'a/b/c', '$sys/#', '$sys/+', '+/+/+', 'x/y/#', '$sys/a'];
const TOPICS = ['a', 'b', 'a/b', 'a/c', 'a/b/c', 'a/x/c', 'q/b/z/z', '$sys/a', '$sys/a/b', 'x/y', 'x/y/z', 'z/z/z'];

describe('pattern index', () => {
  it('bus - the index matches exactly what matches() matches, $ rule included', () => {
    const idx = new PatternIndex<string>();
    for (const p of PATTERNS) idx.add(p, p);
    for (const t of TOPICS) {
      const got: string[] = [];
      idx.match(t, (v) => got.push(v));
      assert.deepEqual(got.sort(), PATTERNS.filter((p) => matches(p, t)).sort(), t);
    }
  });

  it('bus - removing patterns leaves the others and prunes to empty', () => {
    const idx = new PatternIndex<string>();
    for (const p of PATTERNS) idx.add(p, p);
    idx.add('a/b', 'second');
    assert.equal(idx.remove('a/b', 'second'), true);
    assert.equal(idx.remove('a/b', 'nope'), false);
    const got: string[] = [];
    idx.match('a/b', (v) => got.push(v));
    assert.deepEqual(got.sort(), PATTERNS.filter((p) => matches(p, 'a/b')).sort());
    for (const p of PATTERNS) assert.equal(idx.remove(p, p), true, p);
    assert.equal(idx.size, 0);
    const none: string[] = [];
    for (const t of TOPICS) idx.match(t, (v) => none.push(v));
    assert.deepEqual(none, []);
  });
});
