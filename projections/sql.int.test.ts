import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { BASE_URL } from './testing.ts';
import { arrayLiteral, arrayLiteralOf, unnestSource, type Column } from './sql.ts';

/** The array literals the projector sends as parameters must come back from Postgres as the exact values, whatever the text. */
describe('projections - array literals', () => {
  let c: pg.Client;
  before(async () => {
    c = new pg.Client({ connectionString: BASE_URL });
    await c.connect();
  });
  after(async () => {
    await c?.end();
  });

  const nasty = ['plain', 'a"b', 'c\\d', '\\"', '{x,y}', 'NULL', '', ' lead', 'trail ', 'é ✓ 𝄞', "it's", 'new\nline'];

  it('should quote and escape every text so Postgres reads back the same values, NULL as NULL', async () => {
    assert.equal(arrayLiteral(['a"b', 'c\\d', null, 1, true, false]), '{"a\\"b","c\\\\d",NULL,1,t,f}');
    const { rows } = await c.query('SELECT $1::text[] AS t', [arrayLiteral([...nasty, null])]);
    assert.deepEqual(rows[0].t, [...nasty, null]);
    assert.equal(arrayLiteralOf([{ v: 'x' }, { v: null }], (r) => r.v), '{"x",NULL}');
    assert.equal(arrayLiteral([]), '{}');
  });

  it('should carry jsonb texts and typed columns through unnest unchanged', async () => {
    interface Row { t: string | null; n: number; j: string }
    const cols: Column<Row>[] = [
      { name: 't', type: 'text', get: (r) => r.t },
      { name: 'n', type: 'bigint', get: (r) => r.n },
      { name: 'j', type: 'jsonb', get: (r) => r.j },
    ];
    const rows: Row[] = nasty.map((t, i) => ({ t: i % 5 === 4 ? null : t, n: i, j: JSON.stringify({ t, i }) }));
    const src = unnestSource(cols, rows);
    const out = await c.query(`SELECT ${src.select} FROM ${src.from}`, src.params);
    assert.deepEqual(out.rows.map((r) => [r.c0, Number(r.c1), r.c2]), rows.map((r) => [r.t, r.n, JSON.parse(r.j)]));
    const empty = unnestSource(cols, []);
    assert.equal((await c.query(`SELECT count(*)::int AS n FROM ${empty.from}`, empty.params)).rows[0].n, 0);
  });
});
