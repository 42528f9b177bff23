import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { parse } from 'csv-parse';
import { migrate } from '../eventstore/migrate.ts';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { startHubProcess, testOrg, type HubProcess } from '../testing/hubProcess.ts';
import { createReadModelFixtures, type ReadModelFixtures } from '../testing/readModelFixtures.ts';

const ROWS = 100_000;
/** Bytes of padding per row: the export is ~80 MB. */
const PAD = 600;
/**
 * Most the hub's RSS may grow over the whole export. Holding the export would cost more than its
 * 78 MB of text (plus the rows it came from); streaming measured +54..74 MB on the busy development
 * machine, which is V8 heap slack from ~4 MB of garbage per page, not retained data (the stall check
 * below is the sharp one).
 */
const RSS_BOUND = 96 * 1024 * 1024;
/**
 * The client stops reading for STALL_MS after STALL_AT bytes. A hub that honours backpressure is
 * idle meanwhile (RSS flat); one that does not keeps reading pages into uWS buffers, ~1 MB each.
 */
const STALL_AT = 16 * 1024 * 1024;
const STALL_MS = 3000;
const STALL_BOUND = 4 * 1024 * 1024;

/** Resident set size of a process, from /proc (Linux). */
function rss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error('no VmRSS');
  return Number(m[1]) * 1024;
}

describe('audit CSV export', () => {
  let issuer: TestIssuer;
  let hub: HubProcess;
  let fx: ReadModelFixtures;
  const org = testOrg('qbig');

  before(async () => {
    await migrate({ quiet: true });
    fx = createReadModelFixtures();
    issuer = await createTestIssuer();
    hub = await startHubProcess({ ...issuer.env }, { timeoutMs: 60_000 });
    await fx.bulkAudit(org, ROWS, { pad: PAD, start: new Date(Date.now() - ROWS - 60_000) });
    // What autovacuum would do after a bulk load; without it the planner trusts stale statistics.
    await fx.pool.query('ANALYZE audit_log');
  });
  after(async () => {
    await hub?.stop();
    await fx?.clear(org);
    await fx?.close();
  });

  it('csv - 100k rows stream to a slow client in bounded memory, every row once, formula cells escaped', async () => {
    const token = await issuer.token(org, 'admin');
    // Warm up the code path (modules, pools, JIT) so the baseline is not the cold process.
    const warm = await fetch(`${hub.url}/v1/audit?format=csv&type=publish.denied&to=${encodeURIComponent(new Date(Date.now() - ROWS - 55_000).toISOString())}`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(warm.status, 200);
    await warm.text();
    const pid = hub.child.pid!;
    const baseline = rss(pid);
    let peak = baseline;
    const sampler = setInterval(() => (peak = Math.max(peak, rss(pid))), 20);

    let bytes = 0;
    let records = 0;
    let escaped = 0;
    let unescapedFormula = 0;
    let lastN = 0;
    let ordered = true;
    let stall: { from: number; to: number } | undefined;
    const started = Date.now();
    try {
      await new Promise<void>((resolve, reject) => {
        const req = request(`${hub.url}/v1/audit?format=csv&order=asc`, { headers: { authorization: `Bearer ${token}` } }, (res) => {
          if (res.statusCode !== 200) return reject(new Error(`status ${res.statusCode}`));
          const parser = parse({ from_line: 2 });
          parser.on('data', (row: string[]) => {
            records++;
            const topic = row[6];
            if (topic.startsWith("'=")) escaped++;
            if (/^[=+\-@]/.test(topic) || row.some((c) => /^[=+@]/.test(c))) unescapedFormula++;
            const n = (JSON.parse(row[10]) as { n: number }).n;
            if (n !== lastN + 1) ordered = false;
            lastN = n;
          });
          parser.on('error', reject);
          parser.on('end', () => resolve());
          // A slow reader: after every ~1 MB it stops reading for 30 ms, so the hub must wait on backpressure.
          let sincePause = 0;
          res.on('data', (chunk: Buffer) => {
            bytes += chunk.length;
            sincePause += chunk.length;
            parser.write(chunk);
            if (!stall && bytes > STALL_AT) {
              // The long stall: measure from when the pages in flight have landed to its end.
              res.pause();
              stall = { from: 0, to: 0 };
              setTimeout(() => (stall!.from = rss(pid)), 300);
              setTimeout(() => {
                stall!.to = rss(pid);
                res.resume();
              }, STALL_MS);
            } else if (sincePause > 1 << 20) {
              sincePause = 0;
              res.pause();
              setTimeout(() => res.resume(), 30);
            }
          });
          res.on('end', () => parser.end());
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end();
      });
    } finally {
      clearInterval(sampler);
    }
    const growth = peak - baseline;
    const seconds = (Date.now() - started) / 1000;
    const stallGrowth = stall!.to - stall!.from;
    console.log(`# csv export: ${records} rows, ${(bytes / 1e6).toFixed(1)} MB in ${seconds.toFixed(1)} s; hub RSS ${(baseline / 1e6).toFixed(0)} MB → peak ${(peak / 1e6).toFixed(0)} MB (+${(growth / 1e6).toFixed(1)} MB); during a ${STALL_MS} ms client stall ${(stallGrowth / 1e6).toFixed(1)} MB`);
    assert.equal(records, ROWS, 'every row exactly once');
    assert.ok(ordered, 'rows in order, none repeated or skipped');
    assert.equal(escaped, ROWS / 1000, 'every =HYPERLINK cell escaped');
    assert.equal(unescapedFormula, 0);
    assert.ok(stallGrowth < STALL_BOUND, `hub RSS grew ${(stallGrowth / 1e6).toFixed(1)} MB while the client read nothing (backpressure ignored?)`);
    assert.ok(bytes > 70e6, `the export is as large as intended (${bytes} bytes)`);
    assert.ok(growth < RSS_BOUND, `hub RSS grew ${(growth / 1e6).toFixed(1)} MB while streaming ${(bytes / 1e6).toFixed(0)} MB (bound ${RSS_BOUND / 1e6} MB)`);
  });

  it('csv - stalled exports hold their org slot; clients that leave free it and the export stops', async () => {
    const token = await issuer.token(org, 'admin');
    const other = await issuer.token(testOrg('qbig-other'), 'admin');
    // Four exports (ORGHUB_QUERY_MAX_PER_ORG's default) whose clients read the headers and then nothing.
    const stalled = await Promise.all(
      [0, 1, 2, 3].map(
        () =>
          new Promise<{ destroy(): void }>((resolve, reject) => {
            const req = request(`${hub.url}/v1/audit?format=csv`, { headers: { authorization: `Bearer ${token}` } }, (res) => {
              assert.equal(res.statusCode, 200);
              res.pause();
              resolve({ destroy: () => req.destroy() });
            });
            req.on('error', (err) => (req.destroyed ? undefined : reject(err)));
            req.end();
          }),
      ),
    );
    const fifth = await fetch(`${hub.url}/v1/audit?limit=1`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(fifth.status, 429, 'the org is at its bound while its exports wait on backpressure');
    assert.equal((await fifth.json()).error.code, 'limit');
    const elsewhere = await fetch(`${hub.url}/v1/audit?limit=1`, { headers: { authorization: `Bearer ${other}` } });
    assert.equal(elsewhere.status, 200, 'another org is served meanwhile');
    await elsewhere.text();
    for (const s of stalled) s.destroy();
    let status = 0;
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 100))) {
      const r = await fetch(`${hub.url}/v1/audit?limit=1`, { headers: { authorization: `Bearer ${token}` } });
      await r.text();
      status = r.status;
      if (status === 200) break;
    }
    assert.equal(status, 200, 'the slots came back once the clients left');
  });
});
