/**
 * Samples what Postgres backends are waiting on, to see where an append spends its time: every
 * `--period` ms for `--ms` ms, counts (wait event or CPU, first 40 characters of the query) over the
 * active client backends other than itself. Run it beside a bench, e.g.
 *
 *   node --import tsx loadtest/commands.ts --paced-rate 5000 … &
 *   sleep 7; node --import tsx loadtest/pgWaits.ts --ms 6000
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { printTable } from './lib/report.ts';

const { values } = parseArgs({ options: { ms: { type: 'string', default: '5000' }, period: { type: 'string', default: '5' }, top: { type: 'string', default: '12' } } });
const client = new pg.Client({ connectionString: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/orghub' });
await client.connect();
const counts = new Map<string, number>();
let samples = 0;
const end = Date.now() + Number(values.ms);
while (Date.now() < end) {
  const r = await client.query<{ w: string; q: string }>(
    `SELECT coalesce(wait_event_type, '-') || ':' || coalesce(wait_event, 'CPU') AS w, left(query, 40) AS q
       FROM pg_stat_activity
      WHERE state LIKE 'active%' AND pid <> pg_backend_pid() AND backend_type = 'client backend'`,
  );
  samples++;
  for (const row of r.rows) counts.set(`${row.w}\u0000${row.q}`, (counts.get(`${row.w}\u0000${row.q}`) ?? 0) + 1);
  await new Promise((res) => setTimeout(res, Number(values.period)));
}
await client.end();
process.stdout.write(`\n${samples} samples of pg_stat_activity, every ${values.period} ms\n\n`);
printTable(
  ['backends seen', 'wait (CPU = running)', 'query'],
  [...counts].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top)).map(([k, n]) => [n, ...k.split('\u0000')]),
);
