import { createLogger } from '../log.ts';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ClientContext } from '../core/context.ts';
import { SessionRegistry } from '../core/sessions.ts';
import type { BridgeContext } from './bridgeContext.ts';
import { LastWill, willDelayMs } from './lastWill.ts';
import type { Will } from './sessionConnect.ts';
import type { Registrant } from './takeoverRegistry.ts';

/** The parts of a bridge context a Will touches, recording what is published and who watches a key. */
function fakeCtx() {
  const published: string[] = [];
  const watchers = new Map<string, Set<Registrant>>();
  const ctx = {
    publisher: { send: (_c: unknown, topic: string) => void published.push(topic) },
    audit: { record: () => {} },
    log: createLogger('silent'),
    live: new SessionRegistry(),
    takeover: {
      watch: (k: string, r: Registrant) => (watchers.get(k) ?? watchers.set(k, new Set()).get(k)!).add(r),
      unwatch: (k: string, r: Registrant) => watchers.get(k)?.delete(r),
    },
  } as unknown as BridgeContext;
  /** A new connection registered `key` (as the takeover registry tells its watchers). */
  const register = (key: string, clean: boolean) => {
    const w = watchers.get(key);
    watchers.delete(key);
    for (const r of w ?? []) r.takenOver(clean);
  };
  return { ctx, published, watchers, register };
}

const client = (expInS = 3600) => ({ session: 's1', principal: { org: 'o', sub: 'd', exp: Math.floor(Date.now() / 1000) + expInS } }) as unknown as ClientContext;
const will = (delayS?: number): Will => ({ topic: 'lwt/d', payload: Buffer.from('gone'), qos: 1, retain: false, ...(delayS ? { delayS } : {}) });

describe('mqtt last will', () => {
  it('willDelayMs - the delay, cut to the session expiry; 0 when either is absent', () => {
    assert.equal(willDelayMs(undefined, 60_000), 0);
    assert.equal(willDelayMs(2, 60_000), 2000);
    assert.equal(willDelayMs(30, 1000), 1000, 'the session ends first');
    assert.equal(willDelayMs(5, 0), 0, 'a session that ends with the connection');
    assert.equal(willDelayMs(0xffffffff, Number.MAX_SAFE_INTEGER), 2 ** 31 - 1, 'a timer never overflows');
  });

  it('at once - without a delay, or when the session ends with the connection; never after a DISCONNECT or when suppressed', () => {
    const f = fakeCtx();
    const w = new LastWill();
    w.set(will());
    w.onClose(f.ctx, client(), { key: 'k', expiryMs: 60_000 });
    const unparked = new LastWill();
    unparked.set(will(10));
    unparked.onClose(f.ctx, client(), undefined);
    assert.deepEqual(f.published, ['lwt/d', 'lwt/d']);
    const bye = new LastWill();
    bye.set(will());
    bye.disconnected(false);
    bye.onClose(f.ctx, client(), undefined);
    const withWill = new LastWill();
    withWill.set(will());
    withWill.disconnected(true);
    withWill.onClose(f.ctx, client(), undefined);
    const suppressed = new LastWill();
    suppressed.set(will());
    suppressed.suppress();
    suppressed.onClose(f.ctx, client(), undefined);
    assert.deepEqual(f.published, ['lwt/d', 'lwt/d', 'lwt/d'], 'only DISCONNECT with reason 0x04 of those three publishes');
  });

  it('delayed - published when the delay ends; a resuming reconnection cancels it; a clean one publishes at once; none with a lapsed token', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const f = fakeCtx();
    const later = new LastWill();
    later.set(will(2));
    later.onClose(f.ctx, client(), { key: 'late', expiryMs: 60_000 });
    const resumed = new LastWill();
    resumed.set(will(2));
    resumed.onClose(f.ctx, client(), { key: 'resumed', expiryMs: 60_000 });
    const clean = new LastWill();
    clean.set(will(2));
    clean.onClose(f.ctx, client(), { key: 'clean', expiryMs: 60_000 });
    const lapsed = new LastWill();
    lapsed.set(will(2));
    // The token lapsed before the delay ends (here: already at close; the check is made when the delay ends).
    lapsed.onClose(f.ctx, client(-1), { key: 'lapsed', expiryMs: 60_000 });
    t.mock.timers.tick(1000);
    assert.deepEqual(f.published, [], 'nothing before the delay');
    f.register('resumed', false);
    f.register('clean', true);
    assert.deepEqual(f.published, ['lwt/d'], 'the clean start ends the session: its Will goes now');
    t.mock.timers.tick(1000);
    assert.equal(f.published.length, 2, 'the late one after its 2 s; not the resumed one, nor the lapsed one');
    assert.equal(f.watchers.get('late')?.size ?? 0, 0, 'it stopped watching');
  });

  it('taken over - a takeover that resumes the session cancels a delayed Will; one that starts clean publishes it at once', () => {
    const f = fakeCtx();
    const resumedBy = new LastWill();
    resumedBy.set(will(5));
    resumedBy.takenOver(false);
    resumedBy.onClose(f.ctx, client(), { key: 'a', expiryMs: 60_000 });
    assert.deepEqual(f.published, []);
    assert.equal(f.watchers.size, 0, 'nothing left waiting');
    const cleanBy = new LastWill();
    cleanBy.set(will(5));
    cleanBy.takenOver(true);
    cleanBy.onClose(f.ctx, client(), { key: 'b', expiryMs: 60_000 });
    assert.deepEqual(f.published, ['lwt/d']);
    const noDelay = new LastWill();
    noDelay.set(will());
    noDelay.takenOver(false);
    noDelay.onClose(f.ctx, client(), { key: 'c', expiryMs: 60_000 });
    assert.deepEqual(f.published, ['lwt/d', 'lwt/d'], 'without a delay a takeover publishes the Will (MQTT 5 §3.1.4)');
  });
  it('delayed - a revocation or suspension during the delay cancels the Will; one not ended is published (control)', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const f = fakeCtx();
    const live = f.ctx.live!;
    const revoked = new LastWill();
    revoked.set(will(2));
    revoked.onClose(f.ctx, { ...client(), session: 'r' } as ClientContext, { key: 'k-r', expiryMs: 60_000 });
    const kept = new LastWill();
    kept.set(will(2));
    kept.onClose(f.ctx, { ...client(), session: 'k' } as ClientContext, { key: 'k-k', expiryMs: 60_000 });
    assert.deepEqual(live.inOrg('o').map((s) => s.session).sort(), ['k', 'r'], 'waiting Wills are in the session registry');
    live.inOrg('o').find((s) => s.session === 'r')!.end('revoked', 'jti');
    t.mock.timers.tick(2000);
    assert.deepEqual(f.published, ['lwt/d'], 'only the Will that was not revoked');
    assert.equal(live.size, 0, 'both left the registry');
  });
});
