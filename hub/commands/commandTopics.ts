import { isValidPattern, matches } from '../acl/topic.ts';

/**
 * The schema keyword by which a command type declares the topic patterns its commands are
 * delivered on (`schemas/commands/<type>.schema.json`): `"x-orghub-topics": ["devices/+/commands"]`.
 * Every topic matching one of them, for any type, is reserved: only the command path publishes
 * there (docs/access.md "Command topics").
 */
export const TOPICS_KEYWORD = 'x-orghub-topics';

/**
 * Why a declared pattern is unfit, else undefined. The first segment must be a literal, ordinary
 * segment: a leading wildcard would reserve a pattern across every namespace of the org (`#`
 * would forbid every publish), and `$` topics are the hub's own system topics with their own rules.
 */
export function patternProblem(p: unknown): string | undefined {
  if (!isValidPattern(p)) return `${JSON.stringify(p)} is not a valid topic pattern`;
  const first = p.split('/', 1)[0]!;
  if (first === '+' || first === '#') return `"${p}" starts with a wildcard (it would reserve topics in every namespace)`;
  if (first.startsWith('$')) return `"${p}" is a system topic ($-topics are the hub's own)`;
  return undefined;
}

/**
 * The declared command-topic patterns, per type and as one reserved set. Pure and allocation-free
 * per check: a handful of patterns, walked with `matches` (a topic here is always a valid topic,
 * never a pattern: publishes name concrete topics).
 */
export class CommandTopics {
  private readonly byType: ReadonlyMap<string, readonly string[]>;
  /** Every declared pattern once, whatever type declared it. */
  readonly patterns: readonly string[];

  constructor(byType: ReadonlyMap<string, readonly string[]>) {
    this.byType = byType;
    this.patterns = [...new Set([...byType.values()].flat())].sort();
  }

  /** The patterns `type` is delivered on; empty for a type that declares none (it is never published). */
  of(type: string): readonly string[] {
    return this.byType.get(type) ?? [];
  }

  /** Whether a command of `type` may be delivered on `topic`. */
  allows(type: string, topic: string): boolean {
    const ps = this.byType.get(type);
    if (!ps) return false;
    for (let i = 0; i < ps.length; i++) if (matches(ps[i]!, topic)) return true;
    return false;
  }

  /** Whether `topic` is a command topic of any type: reserved for the hub's command path. */
  reserves(topic: string): boolean {
    const ps = this.patterns;
    for (let i = 0; i < ps.length; i++) if (matches(ps[i]!, topic)) return true;
    return false;
  }
}
