import { loadProjectorConfig } from '../hub/config/config.ts';
import { createPostgresEventStore } from '../hub/eventstore/postgresEventStore.ts';
import { DEFAULT_PROJECTION_WRITER_ROLE, assertRoleName } from '../hub/eventstore/roles.ts';
import { createPgEventReader } from './pgEventReader.ts';
import { ProgressBar } from './progress.ts';
import { rebuildProjection, type RebuildSummary } from './rebuild.ts';
import { selectProjections } from './registry.ts';

/**
 * `npm run projections:rebuild -- <name|all> [--no-swap] [--restart]`: blue/green rebuild of each
 * named projection in turn (projections/rebuild.ts), with a progress bar on stderr and a summary on
 * stdout. A rebuild that died is resumed from its checkpoint; `--restart` starts from zero instead.
 * The live projector may keep running; it resumes from the swapped checkpoint.
 */
async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const spec = args.find((a) => !a.startsWith('--'));
  if (!spec) {
    process.stderr.write('usage: npm run projections:rebuild -- <name|all> [--no-swap] [--restart]\n');
    return 2;
  }
  const config = loadProjectorConfig();
  const projections = selectProjections(spec);
  const writerRole = assertRoleName(process.env.ORGHUB_DATABASE_PROJECTION_WRITER_ROLE || DEFAULT_PROJECTION_WRITER_ROLE);
  const store = createPostgresEventStore({ databaseUrl: config.DATABASE_URL, poolSize: 2, queryTimeoutMs: 120_000 });
  const reader = createPgEventReader({ databaseUrl: config.DATABASE_URL, queryTimeoutMs: 120_000 });
  const summaries: RebuildSummary[] = [];
  try {
    for (const projection of projections) {
      const bar = new ProgressBar(`rebuild ${projection.name}`, 0);
      const s = await rebuildProjection({
        databaseUrl: config.DATABASE_URL, store, projection, writerRole, batchSize: Math.max(config.ORGHUB_PROJECTOR_BATCH, 5000),
        swap: !args.includes('--no-swap'),
        restart: args.includes('--restart'),
        read: reader.read,
        onProgress: (done, total) => bar.update(done, total),
      });
      bar.finish(s.events);
      summaries.push(s);
    }
  } finally {
    await reader.close();
    await store.close();
  }
  for (const s of summaries) {
    process.stdout.write(
      `${s.projection} v${s.version}: ${s.events} events${s.resumedFrom ? ` (resumed after ${s.resumedFrom} events written by an interrupted rebuild)` : ''} in ${s.seconds.toFixed(1)} s (${Math.round(s.eventsPerSecond)} ev/s), ` +
        `${s.deadLetters} dead letters, checkpoint ${s.position}, ${s.swapped ? 'swapped into place' : 'left in shadow tables (--no-swap)'}\n`,
    );
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`projections:rebuild failed: ${(err as Error)?.message ?? err}\n`);
    process.exit(1);
  },
);
