#!/usr/bin/env node
// The test runner behind `npm test`. Node 20's `node --test` cannot glob `.ts` files, so this finds
// every `*.test.ts` under hub/, projections/, loadtest/, scripts/ and infra/, then runs, in order:
//   1. bash infra/local/up.sh          (skipped with ORGHUB_SKIP_INFRA=1)
//   2. tsc -p . --noEmit                (skipped with ORGHUB_SKIP_TYPECHECK=1; errors fail the run)
//   3. npm run migrate                  (only once hub/eventstore/migrate.ts exists)
//   4. node --import tsx --test ...     (spec output), twice: every file not marked serial,
//      ORGHUB_TEST_CONCURRENCY at a time, then the files whose first lines say
//      `// test-run: serial` (timing assertions), one at a time; the output ends with the TAP
//      summary lines of both runs added up
//
// Usage: node scripts/test.mjs [path filters...] [--node-test-flags...]
//   A filter keeps the files whose repo-relative path contains it (`hub/acl`, `.int.test.ts`).
//   Arguments starting with `--` go to `node --test` (e.g. `--test-name-pattern=acl`).
// Environment: ORGHUB_TEST_TIMEOUT (seconds for the whole node --test run, default 1200),
//   ORGHUB_TEST_PER_TEST_TIMEOUT (ms, default 300000; on Node 20 it caps each test and each whole
//   test file), ORGHUB_TEST_CONCURRENCY (files run at once, default 2).
// The exit code is node --test's own (1 on a failed step or on the global timeout).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
process.chdir(root);

const TEST_ROOTS = ['hub', 'projections', 'loadtest', 'scripts', 'infra'];
const SKIP_DIRS = new Set(['node_modules', '.data', '.git', 'dist']);
const SUMMARY = /^# (tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) /;

const env = process.env;
const flag = (name) => env[name] === '1' || env[name] === 'true';
const intEnv = (name, dflt) => {
  const v = Number.parseInt(env[name] ?? '', 10);
  return Number.isFinite(v) && v > 0 ? v : dflt;
};

const filters = [];
const nodeArgs = [];
for (const a of process.argv.slice(2)) {
  if (a.startsWith('--')) nodeArgs.push(a);
  else filters.push(a.replace(/^\.\//, '').split('/').join(sep));
}

/** Every `*.test.ts` below the test roots, as sorted repo-relative paths. */
function findTests() {
  const out = [];
  const walk = (dir) => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return; // a root that does not exist yet
    }
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory()) {
        if (!SKIP_DIRS.has(e.name)) walk(p);
      } else if (e.isFile() && e.name.endsWith('.test.ts')) {
        out.push(relative(root, p));
      }
    }
  };
  for (const r of TEST_ROOTS) walk(join(root, r));
  return out.sort();
}

function step(title, cmd, args) {
  console.log(`\n> ${title}: ${[cmd, ...args].join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', env });
  if (r.error) return fail(`${title}: ${r.error.message}`);
  if (r.status !== 0) return fail(`${title} failed (exit ${r.status ?? r.signal})`);
}

function fail(msg, code = 1) {
  console.log(`\n# ${msg}`);
  printSummary({ fail: 1 });
  process.exit(code);
}

function printSummary(counts) {
  const c = { tests: 0, suites: 0, pass: 0, fail: 0, cancelled: 0, skipped: 0, todo: 0, ...counts };
  for (const [k, v] of Object.entries(c)) console.log(`# ${k} ${v}`);
}

const files = findTests().filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)));
if (files.length === 0) {
  const why = filters.length ? `no test file matches ${filters.join(', ')}` : 'no test files yet';
  console.log(`# ${why}`);
  printSummary({});
  process.exit(filters.length ? 1 : 0);
}

if (!flag('ORGHUB_SKIP_INFRA')) step('infra', 'bash', ['infra/local/up.sh']);
if (!flag('ORGHUB_SKIP_TYPECHECK')) {
  const tsc = join(root, 'node_modules', '.bin', 'tsc');
  if (existsSync(tsc)) step('typecheck', tsc, ['-p', '.', '--noEmit']);
  else step('typecheck', 'npx', ['tsc', '-p', '.', '--noEmit']);
}
if (existsSync(join(root, 'hub', 'eventstore', 'migrate.ts')) && !flag('ORGHUB_SKIP_MIGRATE')) {
  step('migrate', 'npm', ['run', '--silent', 'migrate']);
}

/**
 * Files whose first lines carry `// test-run: serial` hold timing assertions (rates within 10 %,
 * p99 ratios, reap deadlines) that a heavy neighbour on a 2-core machine can break. They run after
 * the others, one file at a time.
 */
const SERIAL = /^\/\/ test-run: serial\b/m;
const isSerial = (f) => SERIAL.test(readFileSync(join(root, f), 'utf8').slice(0, 4000));
const serial = files.filter(isSerial);
const parallel = files.filter((f) => !serial.includes(f));

// Own process group, so that a timeout or Ctrl-C also reaches servers the tests spawned.
let current;
const killGroup = (sig) => {
  try {
    if (current) process.kill(-current.pid, sig);
  } catch {
    /* already gone */
  }
};
let timedOut = false;
const limit = intEnv('ORGHUB_TEST_TIMEOUT', 1200);
const timer = setTimeout(() => {
  timedOut = true;
  console.log(`\n# test run timed out after ${limit}s (ORGHUB_TEST_TIMEOUT); stopping it`);
  killGroup('SIGTERM');
  setTimeout(() => killGroup('SIGKILL'), 10_000).unref();
}, limit * 1000);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => killGroup(sig));

/** One `node --test` run; resolves with its exit code and the counts of its TAP summary. */
function runNodeTest(label, list, concurrency) {
  const tapDir = mkdtempSync(join(tmpdir(), 'orghub-test-'));
  const tapFile = join(tapDir, 'report.tap');
  const args = [
    '--import', 'tsx',
    '--test',
    '--test-reporter=spec', '--test-reporter-destination=stdout',
    '--test-reporter=tap', `--test-reporter-destination=${tapFile}`,
    `--test-concurrency=${concurrency}`,
    `--test-timeout=${intEnv('ORGHUB_TEST_PER_TEST_TIMEOUT', 300_000)}`,
    ...nodeArgs,
    ...list,
  ];
  console.log(`\n> test (${label}): ${list.length} file(s), ${concurrency} at a time`);
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { stdio: 'inherit', env, detached: true });
    current = child;
    child.on('exit', (code, signal) => {
      current = undefined;
      let tap = '';
      try {
        tap = readFileSync(tapFile, 'utf8');
      } catch {
        /* the run died before the reporter wrote anything */
      }
      rmSync(tapDir, { recursive: true, force: true });
      const lines = tap.trimEnd().split('\n');
      let i = lines.length;
      while (i > 0 && SUMMARY.test(lines[i - 1])) i--;
      const counts = {};
      for (const l of lines.slice(i)) {
        const [, k, v] = l.match(/^# (\w+) (\S+)/) ?? [];
        if (k) counts[k] = Number(v);
      }
      const failed = code !== 0 || signal !== null;
      if (failed && !(counts.fail > 0)) counts.fail = Math.max(1, counts.fail ?? 0);
      resolve({ code: code ?? (signal ? 1 : 0), counts });
    });
  });
}

const runs = [];
if (parallel.length) runs.push(await runNodeTest('parallel', parallel, intEnv('ORGHUB_TEST_CONCURRENCY', 2)));
if (serial.length && !timedOut) runs.push(await runNodeTest('serial, timing-sensitive', serial, 1));
clearTimeout(timer);
// The summary of both runs ends the output (the TAP reporter's last lines, added up).
const total = {};
for (const r of runs) for (const [k, v] of Object.entries(r.counts)) total[k] = (total[k] ?? 0) + v;
console.log('');
if (timedOut) total.fail = Math.max(1, total.fail ?? 0);
printSummary(total);
process.exit(timedOut || runs.some((r) => r.code !== 0) ? 1 : 0);
