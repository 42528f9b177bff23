import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket from 'ws';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { createTestIssuer, type TestIssuer } from '../../testing/issuer.ts';
import { startHubProcess, testOrg, type HubProcess } from '../../testing/hubProcess.ts';
import { sleep, TestClient, type Frame } from '../../testing/wsClient.ts';
import { verifierReasons, UNREACHABLE_REASONS } from '../../testing/sourceCodes.ts';

const now = () => Math.floor(Date.now() / 1000);
const b64u = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
const part = (token: string, i: number) => token.split('.')[i]!;

/** Upgrade attempt over the real `ws` client: resolves with the refusal, or fails the test if it upgraded. */
async function refusal(url: string, token: string | undefined, opts: { via?: 'header' | 'query'; protocols?: string[] } = {}): Promise<{ status: number; body: string }> {
  try {
    const c = await TestClient.connect(url, token, opts);
    await c.close();
  } catch (err) {
    const e = err as { status?: number; body?: string; message: string };
    if (e.status === undefined) throw new Error(`no HTTP refusal: ${e.message}`);
    return { status: e.status, body: e.body ?? '' };
  }
  assert.fail('the upgrade was accepted');
}

/**
 * Authentication over the wire: refused upgrades (401 + short reason, never an upgrade), the
 * access_token query, in-band refresh and expiry, against a real hub process.
 */
describe('ws auth', () => {
  let issuer: TestIssuer;
  let hub: HubProcess;
  let keyServer: Server;
  let keyServerHits = 0;
  let keyServerUrl = '';
  const clients: TestClient[] = [];

  const connect = async (token: string, opts: { via?: 'header' | 'query'; enc?: 'json' | 'msgpack' } = {}) => {
    const c = await TestClient.connect(hub.wsUrl, token, opts);
    clients.push(c);
    return c;
  };
  const expectOk = async (c: TestClient, frame: Frame) => {
    const r = await c.request(frame);
    assert.equal(r.op, 'ok', `${JSON.stringify(frame).slice(0, 80)} → ${JSON.stringify(r)}`);
  };

  before(async () => {
    issuer = await createTestIssuer();
    keyServer = createServer((_req, res) => {
      keyServerHits++;
      res.end('{"keys":[]}');
    });
    await new Promise<void>((r) => keyServer.listen(0, '127.0.0.1', r));
    keyServerUrl = `http://127.0.0.1:${(keyServer.address() as AddressInfo).port}/jwks.json`;
    hub = await startHubProcess(issuer.env, { timeoutMs: 45_000 });
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await hub?.stop();
    await new Promise((r) => keyServer?.close(r));
  });

  it('ws auth - an upgrade without a token is refused with 401 token_missing', async () => {
    assert.deepEqual(await refusal(hub.wsUrl, undefined), { status: 401, body: 'token_missing' });
    // A non-Bearer Authorization header is no token either.
    const ws = new WebSocket(hub.wsUrl, ['orghub.v1.json'], { headers: { authorization: 'Basic dXNlcjpwYXNz' } });
    const status = await new Promise<number>((resolve) => {
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode!));
      ws.once('open', () => resolve(101));
      ws.once('error', () => {});
    });
    assert.equal(status, 401);
  });

  it('ws auth - every hostile token is refused with 401 and a short reason, and nothing is fetched', async () => {
    const org = testOrg();
    const claims = (extra: Record<string, unknown> = {}) => ({ iss: 'orghub-test', aud: 'orghub-test', sub: 'u1', org, roles: ['admin'], iat: now(), exp: now() + 600, ...extra });
    const good = await issuer.token(org, 'u1');
    const jwks = JSON.parse(readFileSync(issuer.jwksPath, 'utf8')).keys as Record<string, string>[];
    const es256 = jwks.find((k) => k.alg === 'ES256')!;
    const rs256 = jwks.find((k) => k.alg === 'RS256')!;
    const attacker = await generateKeyPair('ES256');
    const attackerJwk = await exportJWK(attacker.publicKey);
    const attackerSign = (header: Record<string, unknown>, payload = claims()) => new SignJWT(payload).setProtectedHeader({ alg: 'ES256', ...header }).sign(attacker.privateKey);
    const hs256 = (header: Record<string, unknown>, payload: Record<string, unknown>, secret: string | Buffer) => {
      const input = `${b64u(header)}.${b64u(payload)}`;
      return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
    };
    const pem = (jwk: Record<string, string>) => createPublicKey({ key: jwk as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' }) as string;
    const tamperedOrg = `${part(good, 0)}.${b64u({ ...JSON.parse(Buffer.from(part(good, 1), 'base64url').toString()), org: testOrg() })}.${part(good, 2)}`;

    const cases: { name: string; reason: string | RegExp; token: string | Promise<string> }[] = [
      { name: 'alg none', reason: 'alg_not_allowed', token: `${b64u({ alg: 'none', typ: 'JWT' })}.${b64u(claims())}.` },
      { name: 'alg NONE', reason: 'alg_not_allowed', token: `${b64u({ alg: 'NONE' })}.${b64u(claims())}.` },
      { name: 'expired', reason: 'token_expired', token: issuer.sign(claims({ exp: now() - 5 })) },
      { name: 'missing exp', reason: 'missing_claim:exp', token: issuer.sign(claims({ exp: undefined })) },
      { name: 'future nbf', reason: 'token_not_yet_valid', token: issuer.sign(claims({ nbf: now() + 300 })) },
      { name: 'wrong iss', reason: 'bad_issuer', token: issuer.sign(claims({ iss: 'evil' })) },
      { name: 'missing iss', reason: 'missing_claim:iss', token: issuer.sign(claims({ iss: undefined })) },
      { name: 'wrong aud', reason: 'bad_audience', token: issuer.sign(claims({ aud: 'other-service' })) },
      { name: 'missing org claim', reason: 'missing_claim:org', token: issuer.sign(claims({ org: undefined })) },
      { name: 'missing sub', reason: 'missing_claim:sub', token: issuer.sign(claims({ sub: undefined })) },
      { name: 'roles not an array', reason: 'bad_claim:roles', token: issuer.sign(claims({ roles: 'admin' })) },
      { name: 'acl with an unknown key', reason: 'bad_claim:acl', token: issuer.sign(claims({ acl: { publish: ['#'] } })) },
      { name: 'unknown kid', reason: 'unknown_kid', token: issuer.sign(claims(), { header: { kid: 'no-such-kid' } }) },
      { name: 'attacker key under our kid', reason: 'bad_signature', token: attackerSign({ kid: es256.kid }) },
      { name: 'ES256 kid used with RS256', reason: /alg_mismatch|bad_signature/, token: issuer.sign(claims(), { alg: 'RS256', header: { kid: es256.kid } }) },
      { name: 'HS256 keyed with the public JWK', reason: 'alg_not_allowed', token: hs256({ alg: 'HS256', kid: es256.kid }, claims(), JSON.stringify(es256)) },
      { name: 'HS256 keyed with the RSA public PEM', reason: 'alg_not_allowed', token: hs256({ alg: 'HS256', kid: rs256.kid }, claims(), pem(rs256)) },
      { name: 'embedded jwk header', reason: 'key_header_forbidden', token: attackerSign({ jwk: attackerJwk }) },
      { name: 'jku header', reason: 'key_header_forbidden', token: attackerSign({ jku: keyServerUrl }) },
      { name: 'x5u header', reason: 'key_header_forbidden', token: attackerSign({ x5u: keyServerUrl }) },
      { name: 'x5c header', reason: 'key_header_forbidden', token: attackerSign({ x5c: ['MIIB'] }) },
      { name: 'crit header', reason: 'crit_forbidden', token: `${b64u({ alg: 'ES256', kid: es256.kid, crit: ['exp'], exp: 1 })}.${b64u(claims())}.${part(good, 2)}` },
      { name: 'tampered payload (org swapped)', reason: 'bad_signature', token: tamperedOrg },
      { name: 'signature stripped', reason: /bad_signature|token_malformed/, token: `${part(good, 0)}.${part(good, 1)}.` },
      { name: 'garbage', reason: 'token_malformed', token: 'not-a-jwt' },
      { name: 'garbage with dots', reason: 'token_malformed', token: '!!!.???.***' },
      { name: 'five parts (JWE shape)', reason: 'token_malformed', token: `${good}.x.y` },
      { name: 'header not JSON', reason: 'token_malformed', token: `${b64u('nope')}.${part(good, 1)}.${part(good, 2)}` },
      { name: 'oversized', reason: 'token_too_large', token: issuer.sign(claims({ pad: 'x'.repeat(7000) })) },
      { name: 'empty sub', reason: 'bad_claim:sub', token: issuer.sign(claims({ sub: '' })) },
      { name: 'empty jti', reason: 'bad_claim:jti', token: issuer.sign(claims({ jti: '' })) },
      { name: 'lifetime beyond ORGHUB_JWT_MAX_TTL', reason: 'token_lifetime_too_long', token: issuer.sign(claims({ exp: now() + 2 * 86400 })) },
      { name: 'iat in the future', reason: 'bad_claim:iat', token: issuer.sign(claims({ iat: now() + 3600, exp: now() + 3900 })) },
    ];
    // Every literal reason the verifier raises must reach a WebSocket client unchanged; token_missing
    // has its own test above, and the fail-closed catch-all cannot be aimed at.
    // bad_typ needs a hub with ORGHUB_JWT_TYP: its own test below.
    const expected = new Set([...cases.map((c) => c.reason).filter((r): r is string => typeof r === 'string'), 'bad_typ']);
    const uncovered = verifierReasons().filter((r) => r !== 'token_missing' && !UNREACHABLE_REASONS.includes(r) && !expected.has(r));
    assert.deepEqual(uncovered, [], 'verifier reasons without a hostile WebSocket case here: add one per reason');

    for (const c of cases) {
      const token = await c.token;
      for (const via of ['header', 'query'] as const) {
        const r = await refusal(hub.wsUrl, token, { via });
        assert.equal(r.status, 401, `${c.name} via ${via}: ${JSON.stringify(r)}`);
        if (typeof c.reason === 'string') assert.equal(r.body, c.reason, `${c.name} via ${via}`);
        else assert.match(r.body, c.reason, `${c.name} via ${via}`);
        assert.ok(r.body.length < 64 && !r.body.includes(token.slice(0, 20)), 'the reason is short and never echoes the token');
      }
    }
    assert.equal(keyServerHits, 0, 'the hub fetched a URL named by a token');
    // Positive control: the same machinery accepts a good token.
    const c = await connect(good);
    await expectOk(c, { op: 'sub', topic: '#' });
  });

  it('ws auth - with ORGHUB_JWT_TYP set, a token of another typ is refused with bad_typ; the configured typ connects', async () => {
    const typed = await startHubProcess({ ...issuer.env, ORGHUB_JWT_TYP: 'at+jwt' }, { timeoutMs: 45_000 });
    try {
      const org = testOrg();
      const claims = { iss: 'orghub-test', aud: 'orghub-test', sub: 'u1', org, roles: ['admin'], iat: now(), exp: now() + 600 };
      const r = await refusal(typed.wsUrl, await issuer.sign(claims, { header: { typ: 'JWT' } }));
      assert.deepEqual(r, { status: 401, body: 'bad_typ' });
      const ok = await TestClient.connect(typed.wsUrl, await issuer.sign(claims, { header: { typ: 'at+jwt' } }));
      await expectOk(ok, { op: 'sub', topic: 't/#' });
      await ok.close();
    } finally {
      await typed.stop();
    }
  });

  it('ws auth - a token in the access_token query parameter works', async () => {
    const org = testOrg();
    const c = await connect(await issuer.token(org, 'q1'), { via: 'query' });
    await expectOk(c, { op: 'sub', topic: 'q/#' });
    await expectOk(c, { op: 'pub', topic: 'q/1', data: 'hello' });
    const m = await c.waitFor((f) => f.op === 'msg');
    assert.equal(m.from, 'q1');
  });

  it('ws auth - an unsupported subprotocol is refused with 400 before the token is looked at', async () => {
    const token = await issuer.token(testOrg(), 'u1');
    assert.deepEqual(await refusal(hub.wsUrl, token, { protocols: ['mqtt'] }), { status: 400, body: 'unsupported_subprotocol' });
    assert.deepEqual(await refusal(hub.wsUrl, token, { protocols: ['orghub.v2.json', 'graphql-ws'] }), { status: 400, body: 'unsupported_subprotocol' });
    // Offering a known one among others picks it.
    const c = await TestClient.connect(hub.wsUrl, token, { protocols: ['graphql-ws', 'orghub.v1.json'] });
    clients.push(c);
    assert.equal(c.ws.protocol, 'orghub.v1.json');
  });

  it('ws auth - refresh with a fresh same-org same-sub token keeps the connection past the old exp', async () => {
    const org = testOrg();
    const c = await connect(await issuer.sign({ sub: 'r1', org, roles: ['admin'] }, { ttlSeconds: 2 }));
    await expectOk(c, { op: 'sub', topic: 'r/#' });
    await expectOk(c, { op: 'auth', token: await issuer.token(org, 'r1') });
    await sleep(3200);
    assert.equal(c.closeCode, undefined, 'closed although refreshed');
    await expectOk(c, { op: 'pub', topic: 'r/after', data: 1 });
    await c.waitFor((f) => f.op === 'msg' && f.topic === 'r/after');
  });

  it('ws auth - a refresh with narrower grants drops only the subscriptions no longer allowed', async () => {
    const org = testOrg();
    const c = await connect(await issuer.token(org, 'svc', ['admin']));
    const p = await connect(await issuer.token(org, 'pub'));
    for (const t of ['a/#', 'b/#', 'b/x', '$presence/#']) await expectOk(c, { op: 'sub', topic: t });
    const narrower = await issuer.token(org, 'svc', [], { acl: { sub: ['a/#', 'b/x'], pub: ['a/#'] } });

    const id = 'refresh-1';
    c.send({ op: 'auth', id, token: narrower });
    await c.waitFor((f) => f.op === 'ok' && f.id === id);
    const dropped = c.frames.filter((f) => f.op === 'err' && f.id === undefined);
    assert.deepEqual(dropped.map((f) => [f.code, f.topic]).sort(), [['forbidden', '$presence/#'], ['forbidden', 'b/#']]);
    assert.ok(dropped.every((f) => typeof f.message === 'string' && f.message.includes(f.topic)), 'the err names the topic');

    for (const t of ['a/1', 'b/1', 'b/x']) await expectOk(p, { op: 'pub', topic: t, data: t });
    await c.waitFor((f) => f.op === 'msg' && f.topic === 'b/x');
    await c.waitFor((f) => f.op === 'msg' && f.topic === 'a/1');
    await sleep(200);
    assert.deepEqual(c.messages().map((m) => `${m.sub} ${m.topic}`).sort(), ['a/# a/1', 'b/x b/x']);
    // The new grants are in force for new requests too.
    assert.equal((await c.request({ op: 'sub', topic: 'b/#' })).code, 'forbidden');
    assert.equal((await c.request({ op: 'pub', topic: 'b/1', data: 1 })).code, 'forbidden');
    await expectOk(c, { op: 'pub', topic: 'a/2', data: 2 });
  });

  it('ws auth - a refresh for another sub, or with a bad token, is refused and the old grants stay', async () => {
    const org = testOrg();
    const c = await connect(await issuer.token(org, 'me', ['device']));
    await expectOk(c, { op: 'sub', topic: 'devices/me/#' });
    const other = await c.request({ op: 'auth', token: await issuer.token(org, 'someone-else', ['admin']) });
    assert.deepEqual([other.op, other.code], ['err', 'forbidden']);
    const expired = await c.request({ op: 'auth', token: await issuer.sign({ sub: 'me', org, roles: ['admin'], exp: now() - 10 }) });
    assert.deepEqual([expired.op, expired.code, expired.message], ['err', 'unauthorized', 'token_expired']);
    const garbage = await c.request({ op: 'auth', token: 'x.y.z' });
    assert.deepEqual([garbage.op, garbage.code], ['err', 'unauthorized']);

    // Still the device: its own topics work, the admin grants of the refused token do not.
    assert.equal((await c.request({ op: 'sub', topic: '#' })).code, 'forbidden');
    await expectOk(c, { op: 'pub', topic: 'devices/me/t', data: 'still here' });
    await c.waitFor((f) => f.op === 'msg' && f.topic === 'devices/me/t');
  });

  it('ws auth - an expiring token closes the socket with 4100, and a refused refresh does not extend it', async () => {
    const org = testOrg();
    const started = Date.now();
    const [plain, refused] = await Promise.all([
      connect(await issuer.sign({ sub: 'e1', org, roles: ['admin'] }, { ttlSeconds: 2 })),
      connect(await issuer.sign({ sub: 'e2', org, roles: ['admin'] }, { ttlSeconds: 2 })),
    ]);
    const r = await refused.request({ op: 'auth', token: await issuer.token(org, 'not-e2') });
    assert.equal(r.code, 'forbidden');
    const codes = await Promise.all([plain.closed, refused.closed]);
    const elapsed = Date.now() - started;
    assert.deepEqual(codes, [4100, 4100]);
    assert.equal(plain.closeReason, 'token expired');
    assert.ok(elapsed > 500 && elapsed < 4000, `closed after ${elapsed} ms`);
  });
});
