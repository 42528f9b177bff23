import { readdirSync, readFileSync } from 'node:fs';
import { Ajv, type ValidateFunction } from 'ajv';

const DIR = new URL('../../schemas/commands/', import.meta.url);

/**
 * Command types and their payload schemas: every `schemas/commands/<type>.schema.json` file is one
 * type. Compiled once at start; adding a command type is adding a schema file.
 */
export class CommandRegistry {
  private readonly validators = new Map<string, ValidateFunction>();

  constructor(dir: URL = DIR) {
    const ajv = new Ajv({ allErrors: false, strict: true });
    for (const file of readdirSync(dir).sort()) {
      const m = /^(.+)\.schema\.json$/.exec(file);
      if (!m) continue;
      const schema = JSON.parse(readFileSync(new URL(file, dir), 'utf8')) as { title?: string };
      if (schema.title !== m[1]) throw new Error(`schemas/commands/${file}: title must be the command type "${m[1]}"`);
      this.validators.set(m[1], ajv.compile(schema));
    }
  }

  get types(): string[] {
    return [...this.validators.keys()];
  }

  has(type: string): boolean {
    return this.validators.has(type);
  }

  /** Returns undefined when valid, else the schema's message (e.g. `/delaySeconds must be >= 0`). */
  check(type: string, data: unknown): string | undefined {
    const v = this.validators.get(type);
    if (!v) return `unknown command type "${type}"`;
    if (v(data)) return undefined;
    const e = v.errors?.[0];
    const extra = e?.keyword === 'additionalProperties' ? ` (${(e.params as { additionalProperty: string }).additionalProperty})` : '';
    return `data${e?.instancePath ?? ''} ${e?.message ?? 'is invalid'}${extra}`;
  }
}
