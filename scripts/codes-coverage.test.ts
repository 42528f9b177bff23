import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CloseCode, httpStatus } from '../hub/errors.ts';
import { ConnackV4, Reason, SUBACK_FAILURE_V4 } from '../hub/mqtt/codes.ts';

/**
 * Every documented wire code must be expected somewhere in the test sources: each error code of
 * hub/errors.ts and docs/protocol.md, each WebSocket close code of hub/errors.ts and
 * docs/protocol.md, and each MQTT return/reason code of hub/mqtt/codes.ts. It is a grep, so it is a
 * floor, not proof: it shows that some test names the code (quoted, as its constant, or as its
 * number/hex literal), not that the assertion around it is right. A code no test names is one no
 * test can notice breaking.
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SELF = fileURLToPath(import.meta.url);

function testSources(): { path: string; text: string }[] {
  const out: { path: string; text: string }[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory() && !['node_modules', '.data', '.git'].includes(e.name)) walk(p);
      else if (e.isFile() && e.name.endsWith('.test.ts') && p !== SELF) out.push({ path: relative(ROOT, p), text: readFileSync(p, 'utf8') });
    }
  };
  for (const d of ['hub', 'projections', 'scripts', 'infra', 'loadtest']) {
    try {
      walk(join(ROOT, d));
    } catch {
      /* a root that does not exist yet */
    }
  }
  return out;
}

const sources = testSources();
const corpus = sources.map((s) => s.text).join('\n');
const doc = (name: string) => readFileSync(join(ROOT, 'docs', name), 'utf8');

/** The rows of the markdown table under `## heading`: first cell of each row. */
function tableCodes(markdown: string, heading: string): string[] {
  const start = markdown.indexOf(`## ${heading}`);
  assert.ok(start >= 0, `docs heading "${heading}" missing`);
  const section = markdown.slice(start).split(/\n## /)[0];
  return [...section.matchAll(/^\| `?([\w]+)`?(?: \([^|]*\))? \|/gm)].map((m) => m[1]).filter((c) => c !== 'code');
}

/** The answer to an unexpected exception (a bug): no valid input can aim at it. */
const CATCH_ALL = ['internal'];

const hex = (n: number) => `0x${n.toString(16).padStart(2, '0')}`;
const named = (group: string, values: Record<string, number>, n: number) => Object.entries(values).filter(([, v]) => v === n).map(([k]) => `${group}.${k}`);

describe('documented codes are exercised by tests', () => {
  it('codes - the test sources are found (positive control)', () => {
    assert.ok(sources.length > 20, `only ${sources.length} test files found`);
    assert.ok(sources.some((s) => s.path.endsWith('auth.int.test.ts')));
  });

  it('codes - every error code (hub/errors.ts and docs/protocol.md) is expected by a test', (t) => {
    const fromSource = Object.keys(httpStatus);
    const fromDocs = tableCodes(doc('protocol.md'), 'Error codes');
    assert.ok(fromSource.includes('forbidden') && fromDocs.includes('forbidden'));
    const undocumented = fromSource.filter((c) => !fromDocs.includes(c));
    const unknownInDocs = fromDocs.filter((c) => !fromSource.includes(c));
    const untested = [...new Set([...fromSource, ...fromDocs])].filter((c) => !CATCH_ALL.includes(c) && !corpus.includes(`'${c}'`) && !corpus.includes(`"${c}"`));
    t.diagnostic(`not required: ${CATCH_ALL.join(', ')} (the answer to an unexpected exception, i.e. a bug; no valid input can aim at it)`);
    assert.deepEqual(
      { untested, undocumented, unknownInDocs },
      { untested: [], undocumented: [], unknownInDocs: [] },
      'untested: add a test that provokes the code and asserts it exactly; undocumented: add it to docs/protocol.md "Error codes"; unknownInDocs: the docs name a code hub/errors.ts does not have',
    );
  });

  it('codes - every WebSocket close code (hub/errors.ts and docs/protocol.md) is asserted by a test', (t) => {
    const fromSource = Object.values(CloseCode).map(String);
    const section = doc('protocol.md').split('## Close codes')[1]?.split(/\n## /)[0] ?? '';
    const fromDocs = tableCodes(doc('protocol.md'), 'Close codes');
    // A row documented as "(reserved)" is a code the hub does not send yet: reported, not required.
    const reserved = fromDocs.filter((c) => new RegExp(`^\\| ${c}[^\\n]*\\(reserved\\)`, 'm').test(section));
    assert.ok(fromDocs.includes('4000') && fromSource.includes('4000'));
    const undocumented = fromSource.filter((c) => !fromDocs.includes(c));
    // A close code counts only where an assertion expects it exactly: `equal(x, 4200)`,
    // `deepEqual(codes, [4100])` or its CloseCode constant on an assert line. Diagnostics that print
    // the code, and assertions that accept either of two codes, do not count.
    const assertLines = corpus.split('\n').filter((l) => /assert/.test(l) && !/diagnostic/.test(l));
    const untested = [...new Set([...fromSource, ...fromDocs])].filter((c) => {
      if (reserved.includes(c)) return false;
      const names = named('CloseCode', CloseCode, Number(c));
      const exact = new RegExp(`equal\\([^\\n]*[,\\[]\\s*${c}\\b`, 'i');
      return !assertLines.some((l) => exact.test(l) || names.some((n) => l.includes(n)));
    });
    if (reserved.length) t.diagnostic(`documented as reserved (not sent yet), not required: ${reserved.join(', ')}`);
    assert.deepEqual(
      { untested, undocumented },
      { untested: [], undocumented: [] },
      'untested: add a test in which a real client receives that close code and asserts it exactly; undocumented: add a row to docs/protocol.md "Close codes"',
    );
  });

  it('codes - every MQTT return and reason code the bridge sends is expected by a test', (t) => {
    // Codes the bridge sends: those its sources name as Reason.x / ConnackV4.x (codes.ts included, for
    // its refusal tables). A constant nothing sends is reported, not required.
    const mqttDir = join(ROOT, 'hub', 'mqtt');
    const bridge = readdirSync(mqttDir).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && f !== 'mqttTestKit.ts').map((f) => readFileSync(join(mqttDir, f), 'utf8')).join('\n');
    const sent = (group: string) => new Set([...bridge.matchAll(new RegExp(`\\b${group}\\.(\\w+)`, 'g'))].map((m) => m[1]));
    const sentReasons = sent('Reason');
    const sentV4 = sent('ConnackV4');
    assert.ok(sentReasons.has('notAuthorized') && sentV4.has('notAuthorized'), 'positive control: the refusal table is found');
    const untested: string[] = [];
    const neverSent: string[] = [];
    for (const [k, v] of Object.entries(Reason)) {
      if (!sentReasons.has(k)) neverSent.push(`Reason.${k}`);
      else if (!corpus.includes(`Reason.${k}`) && !new RegExp(`\\b${hex(v)}\\b`, 'i').test(corpus)) untested.push(`Reason.${k} (${hex(v)})`);
    }
    for (const [k, v] of Object.entries(ConnackV4)) {
      // 3.1.1 CONNACK return codes are small decimals: only the constant or a returnCode/refusedCode assertion counts.
      const asserted = new RegExp(`(returnCode|refusedCode\\([^\\n]*, 4\\))[^\\n]{0,60}\\b${v}\\b`).test(corpus);
      if (!sentV4.has(k) && k !== 'accepted') neverSent.push(`ConnackV4.${k}`);
      else if (!corpus.includes(`ConnackV4.${k}`) && !asserted) untested.push(`ConnackV4.${k} (${v})`);
    }
    if (!corpus.includes('SUBACK_FAILURE_V4') && !new RegExp(`\\b${hex(SUBACK_FAILURE_V4)}\\b`, 'i').test(corpus)) untested.push('SUBACK_FAILURE_V4');
    if (neverSent.length) t.diagnostic(`defined in hub/mqtt/codes.ts but never sent by the bridge: ${neverSent.join(', ')}`);
    assert.deepEqual(untested, [], 'MQTT codes the bridge sends that no test names: add a test in which a real MQTT client receives each one');
  });
});
