import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../errors.ts';
import type { GrantSpec, Principal } from '../auth/principal.ts';
import { compileGrants, validateRoleGrants, type RoleGrants } from './grants.ts';
import { defaultRoleGrants, parseRoleGrants } from './roles.ts';
import { matches } from './topic.ts';

function principal(over: Partial<Principal> = {}): Principal {
  return { sub: 'd1', org: 'acme', roles: [], exp: 2_000_000_000, ...over };
}

const none: RoleGrants = {};

describe('grants', () => {
  describe('device subtree', () => {
    const g = compileGrants(principal({ roles: ['device'] }), defaultRoleGrants);

    for (const p of ['devices/+/#', 'devices/#', '#', '+', '+/d1/#', 'devices/d2/x', 'devices/+', 'devices/d1', '$presence/#', 'devices/d1x/#', 'devices/d/#']) {
      it(`grants - device d1 may not subscribe ${p}`, () => assert.equal(g.canSubscribe(p), false));
    }
    for (const p of ['devices/d1/x', 'devices/d1/#', 'devices/d1/+/y', 'devices/d1/+', 'devices/d1/a/b/c/#']) {
      it(`grants - device d1 may subscribe ${p}`, () => assert.equal(g.canSubscribe(p), true));
    }

    it('grants - device publishes inside its subtree only', () => {
      assert.equal(g.canPublish('devices/d1/telemetry'), true);
      assert.equal(g.canPublish('devices/d1/a/b'), true);
      // NATS `#` is one-or-more: `devices/d1/#` does not cover `devices/d1` itself (same as matches()).
      assert.equal(g.canPublish('devices/d1'), false);
      assert.equal(matches('devices/d1/#', 'devices/d1'), false);
      assert.equal(g.canPublish('devices/d2/telemetry'), false);
      assert.equal(g.canPublish('devices/d10/telemetry'), false);
      assert.equal(g.canPublish('other/d1/x'), false);
      assert.equal(g.canPublish('$presence/d1'), false);
    });

    it('grants - device may ack fleet commands for itself only', () => {
      assert.equal(g.canCommand('fleet.ack', 'devices/d1/acks'), true);
      assert.equal(g.canCommand('fleet.ack', 'devices/d2/acks'), false);
      assert.equal(g.canCommand('device.reboot', 'devices/d1/commands'), false);
      assert.equal(g.canCommand('*', 'devices/d1/acks'), false);
      assert.equal(g.canCommand('fleet.ack', '$commands/d1'), true);
      assert.equal(g.canCommand('fleet.ack', '$commands/d2'), false);
    });

    it('grants - device subscribes to its own fleet command topic only, and publishes to none', () => {
      assert.equal(g.canSubscribe('$commands/d1'), true);
      assert.equal(g.canSubscribe('$commands/d2'), false);
      assert.equal(g.canSubscribe('$commands/+'), false);
      assert.equal(g.canPublish('$commands/d1'), false);
    });
  });

  describe('placeholders', () => {
    for (const sub of ['d1/x', '+', '#', '$sys', 'a.b', 'a b', '', 'x'.repeat(65), '{sub}', 'd\u0430']) {
      it(`grants - a sub of ${JSON.stringify(sub)} drops {sub} grants instead of widening them`, () => {
        const g = compileGrants(
          principal({ sub, roles: ['device'], acl: { pub: ['{sub}/#', 'public/x'], sub: ['{sub}'] } }),
          defaultRoleGrants,
        );
        for (const t of ['devices/d1/x', 'devices/x/y', 'd1/x/y', 'sys/a', '$sys/a', 'devices/a/b']) {
          assert.equal(g.canPublish(t), false, t);
        }
        for (const p of ['#', '+', 'devices/#', 'devices/+/#', '$sys/#', '+/#']) assert.equal(g.canSubscribe(p), false, p);
        assert.equal(g.canPublish('public/x'), true, 'unrelated claim grants survive');
      });
    }

    it('grants - {org} fills a whole segment', () => {
      const g = compileGrants(principal({ acl: { pub: ['orgs/{org}/#', 'x{org}/#'] } }), none);
      assert.equal(g.canPublish('orgs/acme/a'), true);
      assert.equal(g.canPublish('orgs/other/a'), false);
      assert.equal(g.canPublish('xacme/a'), false);
    });

    it('grants - claim patterns with partial placeholders or bad grammar are ignored', () => {
      const g = compileGrants(
        principal({
          acl: {
            pub: ['devices/x{sub}/#', 'a/#/b', 'a.b', 42 as unknown as string, 'ok/1'],
            sub: ['{sub}x', '#a', '', 'ok/+'],
            cmd: [
              { type: '', topic: '#' },
              { type: 'x', topic: 'a/#/b' },
              null as unknown as { type: string; topic: string },
              { type: 'device.reboot', topic: 'devices/{sub}/#' },
            ],
          },
        }),
        none,
      );
      assert.equal(g.canPublish('devices/xd1/a'), false);
      assert.equal(g.canPublish('ok/1'), true);
      assert.equal(g.canSubscribe('ok/+'), true);
      assert.equal(g.canSubscribe('#'), false);
      assert.equal(g.canCommand('device.reboot', 'devices/d1/commands'), true);
      assert.equal(g.canCommand('x', 'a/b'), false);
    });

    it('grants - a malformed acl claim grants nothing and does not throw', () => {
      for (const acl of [null, 'x', 1, [], { pub: 'x' }, { pub: [{}] }, { cmd: {} }]) {
        const g = compileGrants(principal({ acl: acl as unknown as GrantSpec }), none);
        assert.equal(g.canPublish('x'), false);
        assert.equal(g.canSubscribe('x'), false);
      }
    });
  });

  describe('roles', () => {
    it('grants - admin publishes and subscribes everything ordinary, plus $presence for subscribing', () => {
      const g = compileGrants(principal({ sub: 'u1', roles: ['admin'] }), defaultRoleGrants);
      assert.equal(g.canPublish('devices/d9/commands'), true);
      assert.equal(g.canSubscribe('#'), true);
      assert.equal(g.canSubscribe('+/+/telemetry'), true);
      assert.equal(g.canSubscribe('$presence/#'), true);
      assert.equal(g.canSubscribe('$presence/+'), true);
      assert.equal(g.canSubscribe('$sys/#'), false);
      assert.equal(g.canPublish('$presence/u1'), false);
      assert.equal(g.canCommand('device.reboot', 'devices/d9/commands'), true);
      assert.equal(g.canCommand('anything', 'a'), true);
      assert.equal(g.canCommand('device.reboot', '$sys/x'), false);
    });

    it('grants - service publishes and subscribes but issues no commands', () => {
      const g = compileGrants(principal({ sub: 'svc', roles: ['service'] }), defaultRoleGrants);
      assert.equal(g.canPublish('devices/d1/telemetry'), true);
      assert.equal(g.canSubscribe('devices/+/telemetry'), true);
      assert.equal(g.canSubscribe('$presence/#'), false);
      assert.equal(g.canCommand('device.reboot', 'devices/d1/commands'), false);
      assert.equal(g.canCommand('fleet.ack', 'devices/svc/x'), false);
    });

    it('grants - unknown roles, no roles and prototype names grant nothing', () => {
      for (const roles of [[], ['nobody'], ['__proto__'], ['constructor'], ['toString']]) {
        const g = compileGrants(principal({ roles }), defaultRoleGrants);
        assert.equal(g.canPublish('devices/d1/x'), false, roles.join());
        assert.equal(g.canSubscribe('devices/d1/x'), false);
        assert.equal(g.canCommand('fleet.ack', 'devices/d1/x'), false);
      }
    });

    it('grants - the claim and every role are unioned', () => {
      const g = compileGrants(
        principal({ roles: ['device', 'reader'], acl: { pub: ['extra/x'] } }),
        { ...defaultRoleGrants, reader: { sub: ['news/#'] } },
      );
      assert.equal(g.canPublish('devices/d1/x'), true);
      assert.equal(g.canPublish('extra/x'), true);
      assert.equal(g.canSubscribe('news/+'), true);
      assert.equal(g.canSubscribe('extra/x'), false);
    });

    it('grants - $ topics need a grant naming them literally', () => {
      const g = compileGrants(principal({ acl: { pub: ['#', '+/x', '$sys/a'], sub: ['#', '+/#', '$sys/+'] } }), none);
      assert.equal(g.canPublish('$sys/x'), false);
      assert.equal(g.canPublish('$sys/a'), true);
      assert.equal(g.canPublish('$other/x'), false);
      assert.equal(g.canSubscribe('$sys/b'), true);
      assert.equal(g.canSubscribe('$sys/+'), true);
      assert.equal(g.canSubscribe('$sys/#'), false);
      assert.equal(g.canSubscribe('$other/+'), false);
      // A leading-wildcard pattern never matches $ topics, so `#` covers `+/#` and `#`.
      assert.equal(g.canSubscribe('#'), true);
      assert.equal(g.canSubscribe('+/#'), true);
    });

    it('grants - command types match exactly or through *', () => {
      const g = compileGrants(
        principal({ acl: { cmd: [{ type: 'device.reboot', topic: 'devices/+/commands' }, { type: '*', topic: 'fleet/#' }] } }),
        none,
      );
      assert.equal(g.canCommand('device.reboot', 'devices/d7/commands'), true);
      assert.equal(g.canCommand('device.rebootx', 'devices/d7/commands'), false);
      assert.equal(g.canCommand('device.config', 'devices/d7/commands'), false);
      assert.equal(g.canCommand('device.config', 'fleet/a'), true);
      assert.equal(g.canCommand('device.reboot', 'fleet'), false);
    });
  });

  describe('role validation', () => {
    it('grants - the built-in defaults are valid and frozen', () => {
      validateRoleGrants(defaultRoleGrants, 'defaultRoleGrants');
      assert.equal(Object.isFrozen(defaultRoleGrants.device.pub), true);
    });

    const bad: [string, unknown, RegExp][] = [
      ['not an object', [], /must be an object/],
      ['null', null, /must be an object/],
      ['spec not an object', { r: 'x' }, /role "r": must be an object/],
      ['unknown key', { r: { publish: ['a'] } }, /unknown key "publish"/],
      ['pub not an array', { r: { pub: 'a' } }, /role "r" pub: must be an array/],
      ['bad pattern', { r: { sub: ['a', 'a/#/b'] } }, /role "r" sub\[1\] "a\/#\/b".*not the last/],
      ['partial placeholder', { r: { pub: ['devices/x{sub}/#'] } }, /role "r" pub\[0\].*whole segment/],
      ['unknown placeholder', { r: { pub: ['devices/{user}'] } }, /role "r" pub\[0\]/],
      ['cmd not an array', { r: { cmd: {} } }, /role "r" cmd: must be an array/],
      ['cmd type empty', { r: { cmd: [{ type: '', topic: '#' }] } }, /cmd\[0\]: type must be/],
      ['cmd bad topic', { r: { cmd: [{ type: 'x', topic: 'a b' }] } }, /cmd\[0\] topic "a b"/],
      ['read not an array', { r: { read: 'audit' } }, /role "r" read: must be an array of read models/],
      ['unknown read model', { r: { read: ['audit', 'events'] } }, /role "r" read\[1\] "events": unknown read model \(allowed: audit, devices, sessions, commands, \*\)/],
    ];
    for (const [name, r, re] of bad) {
      it(`grants - validateRoleGrants refuses ${name}`, () => {
        assert.throws(() => validateRoleGrants(r, 'ORGHUB_ROLE_GRANTS'), (e: unknown) => {
          assert.ok(e instanceof ConfigError);
          assert.match(e.message, /^ORGHUB_ROLE_GRANTS: /);
          assert.match(e.message, re);
          return true;
        });
      });
    }

    it('grants - compileGrants throws for invalid role defaults', () => {
      assert.throws(() => compileGrants(principal(), { r: { pub: ['a/#/b'] } }), ConfigError);
    });

    it('grants - parseRoleGrants parses, validates and names ORGHUB_ROLE_GRANTS', () => {
      const r = parseRoleGrants('{"kiosk":{"sub":["screens/{sub}/#"],"cmd":[{"type":"fleet.ack","topic":"screens/{sub}/#"}]}}');
      const g = compileGrants(principal({ sub: 'k1', roles: ['kiosk'] }), r);
      assert.equal(g.canSubscribe('screens/k1/+'), true);
      assert.equal(g.canCommand('fleet.ack', 'screens/k1/a'), true);
      assert.equal(g.canPublish('screens/k1/a'), false);
      assert.throws(() => parseRoleGrants('{'), /ORGHUB_ROLE_GRANTS is not valid JSON/);
      assert.throws(() => parseRoleGrants('{"r":{"pub":["a.b"]}}'), /ORGHUB_ROLE_GRANTS: role "r" pub\[0\]/);
      assert.throws(() => parseRoleGrants('[]'), ConfigError);
    });
  });

  describe('properties', () => {
    // Tiny alphabet; `$s` only ever appears as a first segment. `z` never appears in patterns, so it
    // stands for "any other literal" and makes the single-grant comparison below exact.
    const lits = ['a', 'b'];
    const topicAlpha = ['a', 'b', 'z'];
    const topics: string[] = [];
    const extend = (prefix: string[], depth: number) => {
      if (prefix.length > 0) topics.push(prefix.join('/'));
      if (prefix.length === depth) return;
      const alpha = prefix.length === 0 ? [...topicAlpha, '$s'] : topicAlpha;
      for (const s of alpha) extend([...prefix, s], depth);
    };
    extend([], 4);

    let seed = 0x2f6b_1d3a;
    const rnd = (n: number) => {
      // xorshift32: deterministic so a failure reproduces.
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const randomPattern = (): string => {
      const depth = 1 + rnd(3);
      const segs: string[] = [];
      for (let i = 0; i < depth; i++) {
        const choices = i === 0 ? [...lits, '+', '$s'] : [...lits, '+'];
        segs.push(choices[rnd(choices.length)]);
      }
      if (rnd(3) === 0) segs[depth - 1] = segs[0] === '$s' && depth === 1 ? 'a' : '#';
      return segs.join('/');
    };

    it('grants - canSubscribe never allows a pattern matching an ungranted topic', () => {
      let allowed = 0;
      let refused = 0;
      for (let k = 0; k < 3000; k++) {
        const grants = Array.from({ length: 1 + rnd(3) }, randomPattern);
        const g = compileGrants(principal({ acl: { sub: grants, pub: grants } }), none);
        const p = randomPattern();
        const covered = (t: string) => grants.some((gr) => matches(gr, t));
        if (g.canSubscribe(p)) {
          allowed++;
          for (const t of topics) {
            if (!matches(p, t)) continue;
            assert.equal(covered(t), true, `grants ${grants} allowed ${p} but not topic ${t}`);
            assert.equal(g.canPublish(t), true, `grants ${grants}: canPublish(${t}) disagrees with matches`);
          }
        } else {
          refused++;
        }
      }
      // The property must not hold vacuously.
      assert.ok(allowed > 300 && refused > 300, `allowed ${allowed}, refused ${refused}`);
    });

    it('grants - canPublish agrees with matches() over every enumerated topic', () => {
      for (let k = 0; k < 500; k++) {
        const grants = Array.from({ length: 1 + rnd(4) }, randomPattern);
        const g = compileGrants(principal({ acl: { pub: grants } }), none);
        for (const t of topics) {
          assert.equal(g.canPublish(t), grants.some((gr) => matches(gr, t)), `grants ${grants} topic ${t}`);
        }
      }
    });

    it('grants - with one grant, canSubscribe is exact (subsumption over enumerated topics)', () => {
      for (let k = 0; k < 3000; k++) {
        const grant = randomPattern();
        const p = randomPattern();
        const g = compileGrants(principal({ acl: { sub: [grant] } }), none);
        const brute = topics.every((t) => !matches(p, t) || matches(grant, t));
        assert.equal(g.canSubscribe(p), brute, `grant ${grant} pattern ${p}`);
      }
    });

    it('grants - for a concrete topic, canSubscribe equals canPublish under the same grants', () => {
      for (let k = 0; k < 500; k++) {
        const grants = Array.from({ length: 1 + rnd(3) }, randomPattern);
        const g = compileGrants(principal({ acl: { sub: grants, pub: grants } }), none);
        for (const t of topics) assert.equal(g.canSubscribe(t), g.canPublish(t), `grants ${grants} topic ${t}`);
      }
    });
  });

  describe('read grants', () => {
    const models = ['audit', 'devices', 'sessions', 'commands'] as const;

    it('grants - admin reads every model; device and service read none by default', () => {
      const admin = compileGrants(principal({ roles: ['admin'] }), defaultRoleGrants);
      for (const m of models) assert.equal(admin.canRead(m), true, m);
      for (const role of ['device', 'service', 'unknown']) {
        const g = compileGrants(principal({ roles: [role] }), defaultRoleGrants);
        for (const m of models) assert.equal(g.canRead(m), false, `${role} ${m}`);
      }
    });

    it('grants - ORGHUB_ROLE_GRANTS and the acl claim grant single models', () => {
      const roles = parseRoleGrants(JSON.stringify({ ...defaultRoleGrants, auditor: { read: ['audit'] } }));
      const auditor = compileGrants(principal({ roles: ['auditor'] }), roles);
      assert.deepEqual(models.map((m) => auditor.canRead(m)), [true, false, false, false]);
      const claim = compileGrants(principal({ roles: ['device'], acl: { read: ['devices', 'nonsense'] } }), defaultRoleGrants);
      assert.deepEqual(models.map((m) => claim.canRead(m)), [false, true, false, false], 'claim grants what it names; unknown names are ignored');
    });
  });
});
