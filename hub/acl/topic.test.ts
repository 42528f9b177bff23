import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { HubError } from '../errors.ts';
import {
  isSystemTopic,
  isValidOrgId,
  isValidPattern,
  isValidTopic,
  matches,
  parsePattern,
  parseTopic,
  patternToSubject,
  subjectToTopic,
  topicToSubject,
} from './topic.ts';

const seg64 = 'a'.repeat(64);
const deep16 = Array.from({ length: 16 }, () => 'a').join('/');
const long256 = ['b'.repeat(63), 'b'.repeat(63), 'b'.repeat(63), 'b'.repeat(64)].join('/'); // 253 + 3 slashes

const validTopics = [
  'a',
  'devices/d-42/telemetry',
  'A-Z_0-9~:=@',
  '$presence/d1',
  '$sys',
  '$a/b/c',
  seg64,
  '$' + 'a'.repeat(63),
  deep16,
  long256,
];

const hostile: [string, unknown][] = [
  ['empty', ''],
  ['dot', 'a.b'],
  ['dotdot', '../a'],
  ['dotdot segment', 'a/../b'],
  ['star', 'a/*'],
  ['gt', 'a/>'],
  ['space', 'a b'],
  ['tab', 'a\tb'],
  ['newline', 'a\nb'],
  ['nul', 'a\0b'],
  ['del', 'a\x7fb'],
  ['fullwidth slash', 'a\uff0fb'],
  ['division slash', 'a\u2215b'],
  ['cyrillic a', '\u0430'],
  ['fullwidth d', '\uff44evices'],
  ['lone surrogate', 'a\ud800'],
  ['emoji', 'a/\u{1f600}'],
  ['percent-encoded slash', 'a%2Fb'],
  ['leading slash', '/a'],
  ['trailing slash', 'a/'],
  ['double slash', 'a//b'],
  ['slash only', '/'],
  ['17 segments', deep16 + '/a'],
  ['65-char segment', 'a'.repeat(65)],
  ['65-char $ segment', '$' + 'a'.repeat(64)],
  ['257-char topic', long256.slice(0, -1) + '/a'],
  ['$ in second segment', 'a/$b'],
  ['$ inside a segment', 'a$b'],
  ['$ alone', '$'],
  ['$ alone then more', '$/a'],
  ['double $', '$$a'],
  ['backslash', 'a\\b'],
  ['quote', 'a"b'],
  ['braces', 'a/{sub}'],
  ['comma', 'a,b'],
  ['number', 42],
  ['null', null],
  ['undefined', undefined],
  ['array', ['a']],
  ['object', { toString: () => 'a' }],
  ['String object', new String('a')],
];

const wildcardOnly: string[] = ['+', '#', 'a/+', 'a/#', '+/b', '+/+/#', '$sys/#', '$sys/+', 'a/+/b/#'];
const badPatterns: [string, unknown][] = [
  ['# not last', 'a/#/b'],
  ['# first of two', '#/a'],
  ['#a', '#a'],
  ['a#', 'a#'],
  ['+b', '+b'],
  ['b+', 'b+'],
  ['++', '++'],
  ['##', '##'],
  ['$+', '$+'],
  ['$#', '$#'],
  ['+ then $', '+/$a'],
  ['$ alone then #', '$/#'],
];

describe('topic grammar', () => {
  it('topic grammar - accepts valid topics, as topics and as patterns', () => {
    for (const t of validTopics) {
      assert.equal(isValidTopic(t), true, t);
      assert.equal(isValidPattern(t), true, t);
      assert.deepEqual(parseTopic(t), t.split('/'));
    }
  });

  it('topic grammar - accepts exactly 256 chars and refuses 257', () => {
    assert.equal(long256.length, 256);
    assert.equal(isValidTopic(long256), true);
    const t257 = long256.slice(0, -1) + '/a';
    assert.equal(t257.length, 257);
    assert.equal(isValidTopic(t257), false);
    assert.throws(() => parseTopic(t257), /longer than 256/);
  });

  for (const [name, t] of hostile) {
    it(`topic grammar - refuses ${name}`, () => {
      assert.equal(isValidTopic(t), false);
      assert.equal(isValidPattern(t), false);
      assert.throws(() => parseTopic(t), (e: unknown) => e instanceof HubError && e.code === 'bad_topic');
      assert.throws(() => parsePattern(t), (e: unknown) => e instanceof HubError && e.code === 'bad_topic');
    });
  }

  it('topic grammar - wildcards are patterns, not topics', () => {
    for (const p of wildcardOnly) {
      assert.equal(isValidPattern(p), true, p);
      assert.equal(isValidTopic(p), false, p);
      assert.deepEqual(parsePattern(p), p.split('/'));
      assert.throws(() => parseTopic(p), /only allowed in subscription patterns/);
    }
  });

  for (const [name, p] of badPatterns) {
    it(`topic grammar - refuses pattern ${name}`, () => {
      assert.equal(isValidPattern(p), false);
      assert.throws(() => parsePattern(p), (e: unknown) => e instanceof HubError && e.code === 'bad_topic');
    });
  }

  it('topic grammar - messages name the fault without echoing raw control chars', () => {
    assert.throws(() => parseTopic(42), /topic must be a string/);
    assert.throws(() => parseTopic(''), /topic is empty/);
    assert.throws(() => parseTopic('a//b'), /empty segment 2/);
    assert.throws(() => parseTopic('a/' + 'x'.repeat(65)), /segment 2 is longer than 64/);
    assert.throws(() => parseTopic(deep16 + '/a'), /more than 16 segments/);
    assert.throws(() => parseTopic('a\nb'), /invalid character U\+000A at position 1/);
    assert.throws(() => parseTopic('a/$b'), /'\$' may only start the first segment/);
    assert.throws(() => parseTopic('$'), /bare '\$'/);
    assert.throws(() => parsePattern('a/#/b'), /segment 2 is '#' but not the last/);
    assert.throws(() => parsePattern('a/+b'), /segment 2 mixes a wildcard/);
    assert.throws(() => parsePattern('a/#b'), /segment 2 mixes a wildcard/);
    assert.throws(() => parsePattern('a/b+'), /segment 2 mixes a wildcard/);
  });

  it('topic grammar - isSystemTopic is true only for a $ first segment', () => {
    assert.equal(isSystemTopic('$presence/a'), true);
    assert.equal(isSystemTopic('presence/a'), false);
    assert.equal(isSystemTopic('+/a'), false);
  });

  it('topic grammar - org ids', () => {
    for (const o of ['acme', 'a', 'A_b-9', 'o'.repeat(64)]) assert.equal(isValidOrgId(o), true, o);
    for (const o of ['', 'a.b', 'a b', 'a/b', '$a', 'a~', 'o'.repeat(65), '*', '>', 1, null]) {
      assert.equal(isValidOrgId(o), false, String(o));
    }
  });
});

describe('subject mapping', () => {
  it('subject mapping - topics map to hub.<org>.<segs>', () => {
    assert.equal(topicToSubject('acme', 'devices/d-42/telemetry'), 'hub.acme.devices.d-42.telemetry');
    assert.equal(topicToSubject('acme', '$presence/d1'), 'hub.acme.$presence.d1');
    assert.equal(topicToSubject('o', 'x'), 'hub.o.x');
  });

  it('subject mapping - patterns map + to * and # to >', () => {
    assert.equal(patternToSubject('acme', 'devices/+/#'), 'hub.acme.devices.*.>');
    assert.equal(patternToSubject('acme', '#'), 'hub.acme.>');
    assert.equal(patternToSubject('acme', '+'), 'hub.acme.*');
    assert.equal(patternToSubject('acme', '+/+/x'), 'hub.acme.*.*.x');
    assert.equal(patternToSubject('acme', 'a/b'), 'hub.acme.a.b');
  });

  it('subject mapping - refuses bad orgs, topics and patterns', () => {
    const bad = (e: unknown) => e instanceof HubError && e.code === 'bad_topic';
    assert.throws(() => topicToSubject('ac.me', 'a'), bad);
    assert.throws(() => topicToSubject('', 'a'), bad);
    assert.throws(() => topicToSubject('acme', 'a.b'), bad);
    assert.throws(() => topicToSubject('acme', 'a/+'), bad);
    assert.throws(() => patternToSubject('acme', 'a/#/b'), bad);
    assert.throws(() => patternToSubject('a*', '#'), bad);
  });

  it('subject mapping - round-trips every valid topic', () => {
    for (const t of [...validTopics, 'a/b/c', 'x~y/z:w/q=r/s@t']) {
      const s = topicToSubject('org_1', t);
      assert.deepEqual(subjectToTopic(s), { org: 'org_1', topic: t });
    }
  });

  it('subject mapping - subjectToTopic refuses junk subjects', () => {
    const junk = [
      '',
      'hub',
      'hub.',
      'hub.acme',
      'hub.acme.',
      'hub..a',
      'hub.acme..a',
      'hub.acme.a.',
      'hub.acme.*',
      'hub.acme.a.>',
      'hub.acme.a/b',
      'hub.acme.a b',
      'hub.acme.a.$b',
      'hub.acme.$',
      'hub.acme.+',
      'hub.acme.#',
      'hub.ac~me.a',
      'hub.' + 'o'.repeat(65) + '.a',
      'hub.acme.' + Array.from({ length: 17 }, () => 'a').join('.'),
      'hub.acme.' + 'a'.repeat(65),
      'hubx.acme.a',
      'HUB.acme.a',
      '$SYS.hub.acme.a',
      'other.acme.a',
      'hub.acme.\u0430',
    ];
    for (const s of junk) assert.equal(subjectToTopic(s), undefined, JSON.stringify(s));
  });
});

describe('matches', () => {
  const table: [string, string, boolean][] = [
    ['a', 'a', true],
    ['a', 'b', false],
    ['a', 'ab', false],
    ['ab', 'a', false],
    ['a/b', 'a/b', true],
    ['a/b', 'a/bc', false],
    ['a/b', 'a', false],
    ['a', 'a/b', false],
    ['+', 'a', true],
    ['+', 'a/b', false],
    ['+/b', 'a/b', true],
    ['+/b', 'a/c', false],
    ['a/+', 'a/xyz', true],
    ['a/+', 'a', false],
    ['a/+/c', 'a/b/c', true],
    ['a/+/c', 'a/b/d', false],
    ['#', 'a', true],
    ['#', 'a/b/c', true],
    ['a/#', 'a/b', true],
    ['a/#', 'a/b/c/d', true],
    // NATS semantics: `#` matches ONE or more segments, so `a/#` does not match `a`.
    ['a/#', 'a', false],
    ['a/#', 'ab/c', false],
    ['a/+/#', 'a/b', false],
    ['a/+/#', 'a/b/c', true],
    ['devices/d1/#', 'devices/d1', false],
    ['devices/d1/#', 'devices/d10/x', false],
    ['devices/d10/#', 'devices/d1/x', false],
    // `$` rule: a leading wildcard never matches a system topic.
    ['#', '$sys', false],
    ['#', '$sys/a', false],
    ['+', '$sys', false],
    ['+/a', '$sys/a', false],
    ['$sys/#', '$sys/a', true],
    ['$sys/+', '$sys/a', true],
    ['$sys', '$sys', true],
    ['$sys/#', '$sys', false],
    ['$sys', '$syx', false],
    ['a/#', 'a/$b', true], // not a valid topic, but the rule is only about the first segment
  ];
  for (const [p, t, want] of table) {
    it(`matches - ${p} vs ${t} is ${want}`, () => {
      assert.equal(matches(p, t), want);
    });
  }

  it('matches - agrees with the NATS-style segment definition on random inputs', () => {
    const alpha = ['a', 'b', 'ab', '$s'];
    const rnd = (n: number) => Math.floor(Math.random() * n);
    const ref = (p: string[], t: string[]): boolean => {
      if ((p[0] === '+' || p[0] === '#') && t[0].startsWith('$')) return false;
      for (let i = 0; i < p.length; i++) {
        if (p[i] === '#') return t.length > i;
        if (i >= t.length) return false;
        if (p[i] !== '+' && p[i] !== t[i]) return false;
      }
      return p.length === t.length;
    };
    for (let k = 0; k < 3000; k++) {
      const t = Array.from({ length: 1 + rnd(4) }, (_, i) => alpha[rnd(i === 0 ? 4 : 3)]);
      const p = Array.from({ length: 1 + rnd(4) }, (_, i) => ['a', 'b', 'ab', '+', i === 0 ? '$s' : 'a'][rnd(5)]);
      if (rnd(3) === 0) p[p.length - 1] = '#';
      assert.equal(matches(p.join('/'), t.join('/')), ref(p, t), `${p.join('/')} vs ${t.join('/')}`);
    }
  });
});
