import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { settings } from '../hub/config/config.ts';

/** Generates docs/configuration.md from the one typed settings table in hub/config/config.ts. */
export function renderConfigDocs(): string {
  const rows = Object.entries(settings).map(([name, s]) => {
    const spec = s as { type: string; default: unknown; description: string; minimum?: number; maximum?: number; enum?: readonly string[] };
    const range = spec.enum ? spec.enum.join(' \\| ') : spec.minimum !== undefined ? `${spec.minimum}..${spec.maximum}` : '';
    const def = spec.default === '' ? '(empty)' : `\`${spec.default}\``;
    return `| \`${name}\` | ${spec.type}${range ? ` (${range})` : ''} | ${def} | ${spec.description.replace(/\|/g, '\\|')} |`;
  });
  return [
    '# Configuration',
    '',
    'Generated from `hub/config/config.ts` by `npm run docs:config`; do not edit by hand.',
    'Every setting is an environment variable. Values are validated with ajv at start; a bad value stops the hub',
    'with exit status 2 and a message naming the variable. Empty values count as unset.',
    '',
    '| variable | type | default | meaning |',
    '|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const out = fileURLToPath(new URL('../docs/configuration.md', import.meta.url));
  writeFileSync(out, renderConfigDocs());
  console.log(`wrote ${out}`);
}
