import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { OrgTurns } from './orgTurns.ts';

describe('org turns (pure)', () => {
  it('orgTurns - should run an org inline until it has used its budget of the turn, and again in the next turn', () => {
    const t = new OrgTurns<string>({ budgetMs: 1, sliceMs: 2 });
    assert.equal(t.inline('a'), true);
    t.charge('a', 0.6);
    assert.equal(t.inline('a'), true);
    t.charge('a', 0.6);
    assert.equal(t.inline('a'), false, 'a is past its budget');
    assert.equal(t.inline('b'), true, 'another org keeps its own budget');
    t.newTurn();
    assert.equal(t.inline('a'), true);
  });

  it('orgTurns - should take waiting connections round-robin over orgs first, then over an org\'s connections', () => {
    const t = new OrgTurns<string>({ budgetMs: 1, sliceMs: 2 });
    // org a has three busy connections, b one: b gets every other turn, not one in four
    for (const c of ['a1', 'a2', 'a3']) t.add('a', c);
    t.add('b', 'b1');
    const order: string[] = [];
    for (let i = 0; i < 8 && t.pending; i++) {
      const n = t.next()!;
      order.push(n.conn);
      t.add(n.org, n.conn); // every connection still has frames
    }
    assert.deepEqual(order, ['a1', 'b1', 'a2', 'b1', 'a3', 'b1', 'a1', 'b1']);
  });

  it('orgTurns - should forget a connection that is not given back, and an org with none left', () => {
    const t = new OrgTurns<string>({ budgetMs: 1, sliceMs: 2 });
    t.add('a', 'a1');
    t.add('b', 'b1');
    assert.deepEqual(t.next(), { org: 'a', conn: 'a1' });
    assert.deepEqual(t.next(), { org: 'b', conn: 'b1' });
    assert.equal(t.pending, false);
    assert.equal(t.next(), undefined);
  });
});
