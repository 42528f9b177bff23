import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Principal } from '../auth/principal.ts';
import { SessionRegistry, type LiveSession } from './sessions.ts';

const live = (org: string, session: string, ended: string[]): LiveSession => ({
  session,
  transport: 'ws',
  principal: { sub: 's', org, roles: [], exp: 0 } as Principal,
  end: (why) => ended.push(`${session}:${why}`),
});

describe('session registry', () => {
  it('sessions - indexed by org; remove is idempotent; listeners see each add once', () => {
    const reg = new SessionRegistry();
    const ended: string[] = [];
    const seen: string[] = [];
    reg.onAdd((s) => seen.push(s.session));
    const a1 = live('a', 'a1', ended);
    reg.add(a1);
    reg.add(a1);
    reg.add(live('a', 'a2', ended));
    reg.add(live('b', 'b1', ended));
    assert.deepEqual(seen, ['a1', 'a2', 'b1']);
    assert.deepEqual(reg.inOrg('a').map((s) => s.session), ['a1', 'a2']);
    assert.deepEqual(reg.inOrg('c'), []);
    assert.equal(reg.size, 3);
    reg.remove(a1);
    reg.remove(a1);
    assert.equal(reg.size, 2);
    assert.deepEqual(reg.inOrg('a').map((s) => s.session), ['a2']);
  });
  it('sessions - a listener may end the session it is told about', () => {
    const reg = new SessionRegistry();
    const ended: string[] = [];
    reg.onAdd((s) => s.end('revoked', 'token revoked'));
    reg.add(live('a', 'x', ended));
    assert.deepEqual(ended, ['x:revoked']);
  });
});
