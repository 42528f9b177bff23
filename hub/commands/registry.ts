import { readdirSync, readFileSync } from 'node:fs';
import { Ajv, type ValidateFunction } from 'ajv';
import { CommandTopics, patternProblem, TOPICS_KEYWORD } from './commandTopics.ts';

const DIR = new URL('../../schemas/commands/', import.meta.url);

/**
 * Command types and their payload schemas: every `schemas/commands/<type>.schema.json` file is one
 * type. Compiled once at start; adding a command type is adding a schema file. A schema may declare
 * the topic patterns its commands are delivered on (`"x-orghub-topics": [...]`, see
 * `commandTopics.ts`); those topics are reserved for the command path.
 */
export class CommandRegistry {
  private readonly validators = new Map<string, ValidateFunction>();
  /** The declared delivery topics (`x-orghub-topics`) of every type. */
  readonly topics: CommandTopics;

  constructor(dir: URL = DIR) {
    const ajv = new Ajv({ allErrors: false, strict: true });
    // An annotation for the hub, not a constraint on `data`: ajv checks its shape and ignores it when validating.
    ajv.addKeyword({ keyword: TOPICS_KEYWORD, metaSchema: { type: 'array', items: { type: 'string' }, minItems: 1, uniqueItems: true } });
    const byType = new Map<string, readonly string[]>();
    for (const file of readdirSync(dir).sort()) {
      const m = /^(.+)\.schema\.json$/.exec(file);
      if (!m) continue;
      const schema = JSON.parse(readFileSync(new URL(file, dir), 'utf8')) as { title?: string; [TOPICS_KEYWORD]?: unknown };
      if (schema.title !== m[1]) throw new Error(`schemas/commands/${file}: title must be the command type "${m[1]}"`);
      this.validators.set(m[1], ajv.compile(schema));
      const declared = schema[TOPICS_KEYWORD];
      if (declared === undefined) continue;
      for (const p of declared as string[]) {
        const why = patternProblem(p);
        if (why) throw new Error(`${file}: ${TOPICS_KEYWORD}: ${why}`);
      }
      byType.set(m[1], Object.freeze([...(declared as string[])]));
    }
    this.topics = new CommandTopics(byType);
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
