import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parse as parseCsv } from 'csv-parse/sync';
import { migrate } from '../eventstore/migrate.ts';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { startHubProcess, testOrg, type HubProcess } from '../testing/hubProcess.ts';
import { openApiValidator } from '../testing/openapi.ts';
import { createReadModelFixtures, type ReadModelFixtures } from '../testing/readModelFixtures.ts';

/** Every read endpoint, with a query that lists something for its owner. */
const LISTINGS = ['/v1/audit', '/v1/devices', '/v1/sessions', '/v1/commands'] as const;
/** String filters per listing: the injection strings go into each. */
const FILTERS: Record<(typeof LISTINGS)[number], string[]> = {
  '/v1/audit': ['actor', 'type', 'topic', 'outcome', 'from', 'to', 'correlationId', 'order', 'format', 'limit', 'cursor'],
  '/v1/devices': ['online', 'transport', 'seenSince', 'limit', 'cursor'],
  '/v1/sessions': ['device', 'actor', 'transport', 'state', 'from', 'to', 'limit', 'cursor'],
  '/v1/commands': ['device', 'type', 'status', 'from', 'to', 'limit', 'cursor'],
};
const INJECTIONS = ["' OR 1=1 --", '%', '_', '%%', "\\'; DROP TABLE devices; --", 'Łódź 🚀 ☃', 'x'.repeat(5000), 'a\u0000b', 'a\nb', '$1', '*', '..', '(select 1)'];
/** Words that only a database (or driver) error would put in a body. */
const LEAK = /syntax error|\bselect\b|relation "|\bcolumn\b|postgres|pg_|sqlstate|violates|ERROR:|invalid input|operator does|timestamptz|::uuid|\bWHERE\b/i;

const STATEMENT_TIMEOUT_MS = 3000;

describe('query api', () => {
  let issuer: TestIssuer;
  let hub: HubProcess;
  let fx: ReadModelFixtures;
  const check = openApiValidator();

  before(async () => {
    await migrate({ quiet: true });
    fx = createReadModelFixtures();
    issuer = await createTestIssuer();
    // A generous start deadline: the shared 2-core machine can take well over 15 s to compile and start a hub.
    hub = await startHubProcess({ ...issuer.env, ORGHUB_QUERY_STATEMENT_TIMEOUT_MS: String(STATEMENT_TIMEOUT_MS), ORGHUB_QUERY_MAX_PER_ORG: '2' }, { timeoutMs: 60_000 });
  });
  after(async () => {
    await hub?.stop();
    await fx?.close();
  });

  const get = async (path: string, token: string | undefined, headers: Record<string, string> = {}) => {
    const res = await fetch(`${hub.url}${path}`, { headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers } });
    const text = await res.text();
    let body: any = text;
    if (res.headers.get('content-type')?.startsWith('application/json')) body = JSON.parse(text);
    return { status: res.status, body, text, type: res.headers.get('content-type') ?? '' };
  };
  /** GET and validate the body against docs/openapi.yaml for the route template. */
  const getChecked = async (template: string, path: string, token: string) => {
    const r = await get(path, token);
    if (r.type.startsWith('application/json')) {
      const problem = check('get', template, r.status, r.body);
      assert.equal(problem, undefined, problem);
    }
    return r;
  };
  const qs = (o: Record<string, string>) => `?${new URLSearchParams(o)}`;

  /** One org with a row in every read model; returns the ids tests aim at. */
  const seed = async (org: string, tag: string) => {
    const device = await fx.device(org, { id: `dev-${tag}` });
    const audit = await fx.audit(org, { actor: `actor-${tag}`, correlation_id: `corr-${tag}`, topic: `devices/dev-${tag}/telemetry` });
    await fx.audit(org, { actor: `actor-${tag}`, recorded_at: new Date(Date.now() - 1000) });
    const session = await fx.session(org, { device_id: device.id, actor: `actor-${tag}` });
    const command = await fx.command(org, { device_id: device.id, status: `st-${tag}` });
    return { device, audit, session, command, actor: `actor-${tag}` };
  };

  it('roles - device and service tokens get 403 on every read endpoint; admin gets 200', async () => {
    const org = testOrg('qrole');
    const s = await seed(org, 'r');
    const admin = await issuer.token(org, 'admin-1', ['admin']);
    const device = await issuer.token(org, s.device.id, ['device']);
    const service = await issuer.token(org, 'svc', ['service']);
    const paths = [...LISTINGS, `/v1/devices/${s.device.id}`, '/v1/audit?format=csv'];
    for (const p of paths) {
      const ok = await get(p, admin);
      assert.equal(ok.status, 200, `admin ${p}: ${ok.text.slice(0, 200)}`);
      for (const [who, t] of [['device', device], ['service', service]] as const) {
        const r = await get(p, t);
        assert.equal(r.status, 403, `${who} ${p}`);
        assert.equal(r.body.error.code, 'forbidden');
      }
      assert.equal((await get(p, undefined)).status, 401, `no token ${p}`);
    }
    // A token's acl claim may grant one model: devices yes, audit still no.
    const scoped = await issuer.token(org, 'svc2', ['service'], { acl: { read: ['devices'] } });
    assert.equal((await get('/v1/devices', scoped)).status, 200);
    assert.equal((await get('/v1/audit', scoped)).status, 403);
  });

  it("cross-org - org B's ids, filters and cursors show nothing to org A; the owner sees them", async () => {
    const a = testOrg('qa');
    const b = testOrg('qb');
    const sa = await seed(a, 'a');
    const sb = await seed(b, 'b');
    const ta = await issuer.token(a, 'admin-a');
    const tb = await issuer.token(b, 'admin-b');

    // GET /v1/devices/{id}: B's id answers A exactly as a missing id does.
    const foreign = await getChecked('/v1/devices/{id}', `/v1/devices/${sb.device.id}`, ta);
    const missing = await getChecked('/v1/devices/{id}', '/v1/devices/no-such-device', ta);
    assert.equal(foreign.status, 404);
    assert.equal(foreign.text, missing.text, 'identical body for a foreign and a missing id');
    assert.equal(foreign.body.error.code, 'not_found');
    const own = await getChecked('/v1/devices/{id}', `/v1/devices/${sb.device.id}`, tb);
    assert.equal(own.status, 200, 'positive control: B reads its device');
    assert.equal(own.body.id, sb.device.id);

    const cases: [string, Record<string, string>][] = [
      ['/v1/audit', { actor: sb.actor }],
      ['/v1/audit', { correlationId: `corr-b` }],
      ['/v1/audit', { topic: `devices/${sb.device.id}/telemetry` }],
      ['/v1/sessions', { device: sb.device.id }],
      ['/v1/sessions', { actor: sb.actor }],
      ['/v1/commands', { device: sb.device.id }],
      ['/v1/commands', { status: 'st-b' }],
      ['/v1/devices', {}],
    ];
    for (const [path, filter] of cases) {
      const mine = await getChecked(path, `${path}${qs(filter)}`, tb);
      assert.equal(mine.status, 200);
      assert.ok(mine.body.items.length >= 1, `positive control: B sees ${path} ${JSON.stringify(filter)}`);
      const theirs = await getChecked(path, `${path}${qs(filter)}`, ta);
      assert.equal(theirs.status, 200);
      const ids = new Set(mine.body.items.map((i: { id: string }) => i.id));
      assert.ok(theirs.body.items.every((i: { id: string }) => !ids.has(i.id)), `A sees none of B's rows in ${path} ${JSON.stringify(filter)}`);
      if (Object.keys(filter).length > 0) assert.deepEqual(theirs.body.items, []);
    }
    // B's CSV export names B's actor: A's export of the same filter is the header only.
    const csvB = parseCsv((await get(`/v1/audit${qs({ actor: sb.actor, format: 'csv' })}`, tb)).text);
    const csvA = parseCsv((await get(`/v1/audit${qs({ actor: sb.actor, format: 'csv' })}`, ta)).text);
    assert.equal(csvB.length, 3, 'positive control: header + B’s two rows');
    assert.equal(csvA.length, 1);

    // B's cursor in A's request is refused exactly like an edited one.
    const pageB = await get(`/v1/audit${qs({ limit: '1' })}`, tb);
    assert.equal(typeof pageB.body.nextCursor, 'string');
    const nextB = await get(`/v1/audit${qs({ limit: '1', cursor: pageB.body.nextCursor })}`, tb);
    assert.equal(nextB.status, 200, 'positive control: B pages on with its cursor');
    assert.equal(nextB.body.items.length, 1);
    const stolen = await get(`/v1/audit${qs({ limit: '1', cursor: pageB.body.nextCursor })}`, ta);
    assert.equal(stolen.status, 400);
    assert.equal(stolen.body.error.code, 'invalid');
    // ... including for the other listings
    for (const path of ['/v1/devices', '/v1/sessions', '/v1/commands']) {
      await fx[path === '/v1/devices' ? 'device' : path === '/v1/sessions' ? 'session' : 'command'](b);
      const p1 = await get(`${path}${qs({ limit: '1' })}`, tb);
      assert.equal(typeof p1.body.nextCursor, 'string', `${path} has a second page for B`);
      assert.equal((await get(`${path}${qs({ limit: '1', cursor: p1.body.nextCursor })}`, tb)).status, 200);
      const r = await get(`${path}${qs({ limit: '1', cursor: p1.body.nextCursor })}`, ta);
      assert.equal(r.status, 400, path);
      assert.equal(r.body.error.code, 'invalid');
    }
    assert.ok(sa.device.id !== sb.device.id);
  });

  it('filters - injection strings in every filter answer 400 invalid or match literally, and never leak database text', async () => {
    // Positive controls (own org): hostile-looking values stored as data are found literally, and only them.
    const ctl = testOrg('qctl');
    const tc = await issuer.token(ctl, 'admin');
    await fx.audit(ctl, { actor: "' OR 1=1 --", type: '%weird_type' });
    await fx.audit(ctl, { actor: 'Łódź 🚀 ☃', type: 'xweird' });
    assert.equal((await get(`/v1/audit${qs({ actor: "' OR 1=1 --" })}`, tc)).body.items.length, 1);
    assert.deepEqual((await get(`/v1/audit${qs({ type: '%weird' })}`, tc)).body.items.map((e: { type: string }) => e.type), ['%weird_type']);
    assert.equal((await get(`/v1/audit${qs({ actor: 'Łódź 🚀 ☃' })}`, tc)).body.items.length, 1);
    assert.equal((await get(`/v1/audit${qs({ actor: "' OR 1=1" })}`, tc)).body.items.length, 0, 'exact, not a prefix');
    // The sweep runs in an org with ordinary rows only, so a literal match finds nothing.
    const org = testOrg('qinj');
    await seed(org, 'i');
    const t = await issuer.token(org, 'admin');
    let rejected = 0;
    let literal = 0;
    for (const [path, params] of Object.entries(FILTERS)) {
      for (const p of params) {
        for (const value of INJECTIONS) {
          const r = await get(`${path}${qs({ [p]: value })}`, t);
          const what = `${path} ${p}=${JSON.stringify(value.slice(0, 30))}`;
          assert.ok(r.status === 200 || r.status === 400, `${what} → ${r.status} ${r.text.slice(0, 200)}`);
          if (r.status === 400) {
            assert.doesNotMatch(r.text, LEAK, what);
            assert.equal(r.body.error.code, 'invalid', what);
            assert.ok(!r.body.error.message.includes(value.slice(0, 8)) || value.length < 3, `${what}: the message does not echo the value`);
            rejected++;
          } else {
            // Matched literally: nothing in this org has these values (the controls above are exact matches).
            const items = r.type.startsWith('text/csv') ? parseCsv(r.text).slice(1) : r.body.items;
            assert.equal(items.length, 0, what);
            literal++;
          }
        }
      }
    }
    for (const value of INJECTIONS) {
      const r = await get(`/v1/devices/${encodeURIComponent(value)}`, t);
      assert.ok(r.status === 404 || r.status === 400, `device id ${JSON.stringify(value.slice(0, 30))} → ${r.status}`);
      assert.ok(r.body.error.code === (r.status === 404 ? 'not_found' : 'invalid'));
      assert.doesNotMatch(r.text, LEAK);
    }
    assert.ok(rejected > 50 && literal > 20, `both outcomes exercised (rejected ${rejected}, literal ${literal})`);
  });

  it('paging - limits, cursors and bad parameters answer 400 invalid with a clear message', async () => {
    const org = testOrg('qpage');
    for (let i = 0; i < 7; i++) await fx.audit(org, { recorded_at: new Date(Date.now() - i * 1000), actor: 'pager' });
    const t = await issuer.token(org, 'admin');
    const ids: string[] = [];
    let cursor: string | undefined;
    for (let i = 0; i < 10; i++) {
      const r = await getChecked('/v1/audit', `/v1/audit${qs({ actor: 'pager', limit: '3', ...(cursor ? { cursor } : {}) })}`, t);
      assert.equal(r.status, 200);
      ids.push(...r.body.items.map((e: { id: string }) => e.id));
      cursor = r.body.nextCursor ?? undefined;
      if (!cursor) break;
    }
    assert.equal(ids.length, 7);
    assert.equal(new Set(ids).size, 7, 'no row twice');
    const first = await get(`/v1/audit${qs({ actor: 'pager', limit: '3' })}`, t);
    const again = await get(`/v1/audit${qs({ actor: 'pager', limit: '3' })}`, t);
    assert.equal(first.body.nextCursor, again.body.nextCursor, 'the same page gives the same cursor');
    const c: string = first.body.nextCursor;
    const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
    const bad: [Record<string, string>, RegExp][] = [
      [{ limit: '1001' }, /limit.*1000/],
      [{ limit: '0' }, /limit/],
      [{ limit: 'ten' }, /limit.*integer/],
      [{ cursor: flip(c, 2) }, /cursor is invalid/],
      [{ cursor: flip(c, c.length - 1) }, /cursor is invalid/],
      [{ cursor: c, actor: 'someone-else' }, /cursor is invalid/],
      [{ cursor: 'not-a-cursor' }, /cursor/],
      [{ nope: '1' }, /unknown query parameter "nope"/],
      [{ from: 'yesterday' }, /"from" must be an RFC 3339 date-time/],
      [{ from: '2026-11-30T12:00:00Z', to: '2026-11-30T11:00:00Z' }, /"from" must be before "to"/],
      [{ order: 'sideways' }, /"order" must be one of desc|asc/],
    ];
    for (const [params, message] of bad) {
      const r = await getChecked('/v1/audit', `/v1/audit${qs({ actor: 'pager', ...params })}`, t);
      assert.equal(r.status, 400, JSON.stringify(params));
      assert.equal(r.body.error.code, 'invalid');
      assert.match(r.body.error.message, message, JSON.stringify(params));
    }
    const twice = await get('/v1/audit?actor=a&actor=b', t);
    assert.equal(twice.status, 400);
    assert.match(twice.body.error.message, /"actor" is given more than once/);
    // access_token in the query is for the WebSocket upgrade only (URLs end up in logs): on the HTTP
    // API it authenticates nothing, and it is not taken for a filter either.
    const viaQuery = await get(`/v1/audit${qs({ actor: 'pager', access_token: t })}`, undefined);
    assert.equal(viaQuery.status, 401);
    assert.equal(viaQuery.body.error.message, 'token_missing');
    const viaHeader = await get(`/v1/audit${qs({ actor: 'pager', access_token: t })}`, t);
    assert.equal(viaHeader.status, 200);
    assert.equal(viaHeader.body.items.length, 7);
  });

  it('csv - small export: exact rows, formula cells escaped, Accept: text/csv works too', async () => {
    const org = testOrg('qcsv');
    const t = await issuer.token(org, 'admin');
    const hostile = ['=1+2', '+SUM(A1)', '-3', '@cmd', '\tTAB', '\rCR', 'plain, "quoted"'];
    for (const [i, actor] of hostile.entries()) await fx.audit(org, { actor, recorded_at: new Date(Date.now() - (hostile.length - i) * 1000), data: { v: i } });
    const ways: { path: string; headers: Record<string, string> }[] = [
      { path: `/v1/audit${qs({ format: 'csv', order: 'asc' })}`, headers: {} },
      { path: `/v1/audit${qs({ order: 'asc' })}`, headers: { accept: 'text/csv' } },
    ];
    for (const how of ways) {
      const r = await get(how.path, t, how.headers);
      assert.equal(r.status, 200);
      assert.match(r.type, /^text\/csv/);
      const rows: string[][] = parseCsv(r.text);
      assert.equal(rows.length, hostile.length + 1);
      assert.deepEqual(rows[0].slice(0, 5), ['recordedAt', 'id', 'globalPosition', 'type', 'actor']);
      const actors = rows.slice(1).map((row) => row[4]);
      assert.deepEqual(actors, ["'=1+2", "'+SUM(A1)", "'-3", "'@cmd", "'\tTAB", "'\rCR", 'plain, "quoted"']);
      assert.deepEqual(JSON.parse(rows[1][10]), { v: 0 });
    }
    // A JSON page of the same org is unescaped data.
    const json = await get(`/v1/audit${qs({ order: 'asc' })}`, t);
    assert.equal(json.body.items[0].actor, '=1+2');
    assert.equal((await get(`/v1/audit${qs({ format: 'csv', cursor: json.body.nextCursor ?? 'a.b' })}`, t)).status, 400, 'an export takes no cursor');

    // Each export is itself audited, in the exporting org only, with its filter and row count; a
    // JSON page is not. Another org's export is recorded in that org, never in this one.
    const other = testOrg('qcsvo');
    await fx.audit(other, { actor: 'someone' });
    const ot = await issuer.token(other, 'admin');
    assert.equal((await get(`/v1/audit${qs({ format: 'csv', actor: 'someone' })}`, ot, { 'x-request-id': 'export-other' })).status, 200);
    const exportsOf = async (o: string) =>
      (await fx.pool.query<{ data: { action: string; filter: Record<string, string>; rows: number; complete: boolean }; actor: string; corr: string }>(
        `SELECT data, metadata->>'actor' AS actor, metadata->>'correlationId' AS corr FROM events WHERE org_id = $1 AND type = 'audit.admin.action' AND data->>'action' = 'audit.export' ORDER BY global_position`,
        [o],
      )).rows;
    const deadline = Date.now() + 15_000;
    while ((await exportsOf(org)).length < 2 || (await exportsOf(other)).length < 1) {
      assert.ok(Date.now() < deadline, 'export audit events not recorded within 15 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    const mine = await exportsOf(org);
    assert.deepEqual(mine.map((e) => [e.data.rows, e.data.complete, e.data.filter.order]), [[hostile.length, true, 'asc'], [hostile.length, true, 'asc']]);
    const theirs = await exportsOf(other);
    assert.deepEqual(theirs.map((e) => [e.data.rows, e.data.filter.actor, e.corr]), [[1, 'someone', 'export-other']]);
    assert.ok(mine.every((e) => e.corr !== 'export-other'), "another org's export is not in this org's log");
  });

  it('limits - a query past the statement timeout answers 503 without database text; one org is held to its in-flight bound', async () => {
    const a = testOrg('qlim');
    const b = testOrg('qlim');
    await seed(a, 'l');
    await seed(b, 'm');
    const ta = await issuer.token(a, 'admin');
    const tb = await issuer.token(b, 'admin');
    assert.equal((await get('/v1/devices', ta)).status, 200, 'positive control before the lock');
    // An exclusive lock on `devices` makes every devices query wait until the statement timeout.
    const locker = await fx.pool.connect();
    try {
      await locker.query('BEGIN; LOCK TABLE devices IN ACCESS EXCLUSIVE MODE');
      const started = Date.now();
      const waiting = [get('/v1/devices', ta), get('/v1/devices', ta)];
      // Both slots of org A are taken (poll until the hub has them in flight), so a third is refused at once...
      let third = await get('/v1/audit', ta);
      for (const deadline = started + STATEMENT_TIMEOUT_MS - 500; third.status !== 429 && Date.now() < deadline; ) third = await get('/v1/audit', ta);
      assert.equal(third.status, 429);
      assert.equal(third.body.error.code, 'limit');
      // ... while org B, with its own bound, is served.
      assert.equal((await get('/v1/audit', tb)).status, 200);
      for (const r of await Promise.all(waiting)) {
        assert.equal(r.status, 503, r.text);
        assert.equal(r.body.error.code, 'unavailable');
        assert.doesNotMatch(r.text, LEAK);
        assert.doesNotMatch(r.text, /statement timeout|canceling|lock/i);
      }
      assert.ok(Date.now() - started >= STATEMENT_TIMEOUT_MS - 100, 'answered by the timeout, not earlier');
    } finally {
      await locker.query('ROLLBACK');
      locker.release();
    }
    assert.equal((await get('/v1/devices', ta)).status, 200, 'served again once the lock is gone and the slots are free');
  });
});
