/**
 * Grants: what one principal may publish, subscribe to and command, compiled once per connect or
 * token refresh into segment tries, so each check is a short walk with no regex and no grant parsing.
 *
 * Effective grants = the token's `acl` claim ∪ the role defaults of each of its roles. Patterns may use
 * the placeholders `{sub}` and `{org}`, each filling a WHOLE segment (`devices/{sub}/#`). A pattern
 * that uses `{sub}` is dropped when `sub` is not a plain segment (contains `/`, `+`, `#`, starts with
 * `$`, ...): a placeholder can never widen a grant. Bad claim-supplied patterns are ignored; bad role
 * defaults throw ConfigError (call `validateRoleGrants` at startup).
 */
import { ConfigError } from '../errors.ts';
import type { GrantSpec, Principal } from '../auth/principal.ts';
import { isPlainSegment, isValidPattern, parsePattern, MAX_TOPIC_LENGTH } from './topic.ts';

/** Role name → its default grants. Treat as immutable once passed to `compileGrants` (it is cached). */
export type RoleGrants = Record<string, GrantSpec>;

export interface Grants {
  /** `topic` is a valid concrete topic. True when some pub grant matches it (see `matches`). */
  canPublish(topic: string): boolean;
  /**
   * `pattern` is a valid pattern. True when ONE sub grant covers every topic the pattern can match.
   * Conservative: a pattern covered only by the union of several grants is refused; never allows too much.
   */
  canSubscribe(pattern: string): boolean;
  /** `type` is a command type, `topic` a valid concrete topic. Cmd grants match `type` exactly or by `*`. */
  canCommand(type: string, topic: string): boolean;
}

const SUB = '{sub}';
const ORG = '{org}';
const MAX_COMMAND_TYPE_LENGTH = 128;

/** One node of a grant trie. A `#` grant ends at the node where it appears (`hash`). */
class Node {
  lit: Map<string, Node> | undefined = undefined;
  plus: Node | undefined = undefined;
  /** A grant continues here with `#`: covers one or more further segments. */
  hash = false;
  /** A grant ends exactly here. */
  end = false;
}

function insert(root: Node, segs: readonly string[]): void {
  let n = root;
  for (let i = 0; i < segs.length; i++) {
    const s = segs[i];
    if (s === '#') {
      n.hash = true;
      return;
    }
    if (s === '+') {
      n = n.plus ??= new Node();
    } else {
      const lit = (n.lit ??= new Map());
      let next = lit.get(s);
      if (next === undefined) lit.set(s, (next = new Node()));
      n = next;
    }
  }
  n.end = true;
}

/**
 * Topic match from node `n` at segment `i`. At most one node per depth is reachable through `lit`
 * and one through `plus`, and each trie node sits at one depth, so the walk is bounded by trie size.
 */
function matchFrom(n: Node, segs: readonly string[], i: number): boolean {
  for (;;) {
    if (i === segs.length) return n.end;
    if (n.hash) return true;
    const next = n.lit?.get(segs[i]);
    if (n.plus !== undefined) {
      if (next !== undefined && matchFrom(next, segs, i + 1)) return true;
      n = n.plus;
    } else if (next !== undefined) {
      n = next;
    } else {
      return false;
    }
    i++;
  }
}

/** Subsumption from node `n` at segment `i`: does one grant cover the pattern rest `segs[i..]`? */
function coverFrom(n: Node, segs: readonly string[], i: number): boolean {
  for (;;) {
    // A grant `#` here covers any non-empty rest, including a pattern `+`, literal or `#`.
    if (i < segs.length && n.hash) return true;
    if (i === segs.length) return n.end;
    const s = segs[i];
    // A pattern `#` needs a grant `#` at this position or earlier (handled above).
    if (s === '#') return false;
    if (s === '+') {
      if (n.plus === undefined) return false;
      n = n.plus;
    } else {
      const next = n.lit?.get(s);
      if (n.plus !== undefined) {
        if (next !== undefined && coverFrom(next, segs, i + 1)) return true;
        n = n.plus;
      } else if (next !== undefined) {
        n = next;
      } else {
        return false;
      }
    }
    i++;
  }
}

/** Root step shared by match and cover: a `$` first segment is only reached through a literal grant. */
function fromRoot(root: Node, segs: readonly string[], walk: typeof matchFrom): boolean {
  const first = segs[0];
  if (first.charCodeAt(0) === 36 /* $ */) {
    const next = root.lit?.get(first);
    return next !== undefined && walk(next, segs, 1);
  }
  return walk(root, segs, 0);
}

function isEmpty(n: Node): boolean {
  return n.lit === undefined && n.plus === undefined && !n.hash && !n.end;
}

/** A pattern split into segments, with `{sub}` / `{org}` kept as whole-segment placeholders. */
type Template = readonly string[];

interface CompiledSpec {
  pub: Template[];
  sub: Template[];
  cmd: { type: string; topic: Template }[];
}

/**
 * Parses a pattern that may contain whole-segment placeholders. Returns the segments, or a message
 * explaining why it is invalid.
 */
function parseTemplate(p: unknown): Template | string {
  if (typeof p !== 'string') return 'pattern must be a string';
  if (!p.includes('{')) {
    if (isValidPattern(p)) return p.split('/');
    try {
      parsePattern(p);
    } catch (e) {
      return (e as Error).message;
    }
    return 'pattern is invalid';
  }
  // Check the grammar with each whole-segment placeholder replaced by a plain stand-in; a brace
  // anywhere else (`x{sub}`) is not in the alphabet and fails the grammar.
  const segs = p.split('/');
  const probe = segs.map((s) => (s === SUB || s === ORG ? 'x' : s)).join('/');
  try {
    parsePattern(probe);
  } catch (e) {
    return `${(e as Error).message} (placeholders {sub} and {org} must fill a whole segment)`;
  }
  return segs;
}

function parseCmdType(t: unknown): string | undefined {
  return typeof t === 'string' && t.length > 0 && t.length <= MAX_COMMAND_TYPE_LENGTH ? t : undefined;
}

/** Compiles a spec leniently: invalid entries are skipped (used for token claims). */
function compileClaim(spec: unknown): CompiledSpec {
  const out: CompiledSpec = { pub: [], sub: [], cmd: [] };
  if (spec === null || typeof spec !== 'object') return out;
  const s = spec as GrantSpec;
  for (const key of ['pub', 'sub'] as const) {
    const list = s[key];
    if (!Array.isArray(list)) continue;
    for (const p of list) {
      const t = parseTemplate(p);
      if (typeof t !== 'string') out[key].push(t);
    }
  }
  if (Array.isArray(s.cmd)) {
    for (const c of s.cmd) {
      if (c === null || typeof c !== 'object') continue;
      const type = parseCmdType(c.type);
      const topic = parseTemplate(c.topic);
      if (type !== undefined && typeof topic !== 'string') out.cmd.push({ type, topic });
    }
  }
  return out;
}

function fail(source: string, where: string, why: string): never {
  throw new ConfigError(`${source}: ${where}: ${why}`);
}

/** Compiles a spec strictly: any invalid entry throws ConfigError naming `source` and the entry. */
function compileRole(source: string, role: string, spec: unknown): CompiledSpec {
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) {
    fail(source, `role "${role}"`, 'must be an object like {"pub":[..],"sub":[..],"cmd":[..]}');
  }
  const out: CompiledSpec = { pub: [], sub: [], cmd: [] };
  for (const key of Object.keys(spec)) {
    if (key !== 'pub' && key !== 'sub' && key !== 'cmd') {
      fail(source, `role "${role}"`, `unknown key "${key}" (allowed: pub, sub, cmd)`);
    }
  }
  const s = spec as GrantSpec;
  for (const key of ['pub', 'sub'] as const) {
    const list: unknown = s[key];
    if (list === undefined) continue;
    if (!Array.isArray(list)) fail(source, `role "${role}" ${key}`, 'must be an array of patterns');
    list.forEach((p: unknown, i: number) => {
      const t = parseTemplate(p);
      if (typeof t === 'string') fail(source, `role "${role}" ${key}[${i}] ${JSON.stringify(p)}`, t);
      out[key].push(t);
    });
  }
  const cmd: unknown = s.cmd;
  if (cmd !== undefined) {
    if (!Array.isArray(cmd)) fail(source, `role "${role}" cmd`, 'must be an array of {type, topic}');
    cmd.forEach((c: unknown, i: number) => {
      const where = `role "${role}" cmd[${i}]`;
      if (c === null || typeof c !== 'object') fail(source, where, 'must be an object {type, topic}');
      const { type: rawType, topic: rawTopic } = c as { type?: unknown; topic?: unknown };
      const type = parseCmdType(rawType);
      if (type === undefined) {
        fail(source, where, `type must be a non-empty string of at most ${MAX_COMMAND_TYPE_LENGTH} chars, or "*"`);
      }
      const topic = parseTemplate(rawTopic);
      if (typeof topic === 'string') fail(source, `${where} topic ${JSON.stringify(rawTopic)}`, topic);
      out.cmd.push({ type, topic });
    });
  }
  return out;
}

function compileRoles(source: string, r: unknown): Map<string, CompiledSpec> {
  if (r === null || typeof r !== 'object' || Array.isArray(r)) {
    throw new ConfigError(`${source}: must be an object mapping role names to {"pub","sub","cmd"}`);
  }
  const out = new Map<string, CompiledSpec>();
  for (const [role, spec] of Object.entries(r)) {
    if (role.length === 0) throw new ConfigError(`${source}: role names must not be empty`);
    out.set(role, compileRole(source, role, spec));
  }
  return out;
}

/**
 * Checks role defaults at startup; throws ConfigError naming `source`, the role and the bad entry.
 * `source` is the setting they came from (e.g. `ORGHUB_ROLE_GRANTS`).
 */
export function validateRoleGrants(r: unknown, source = 'role grants'): asserts r is RoleGrants {
  compileRoles(source, r);
}

const roleCache = new WeakMap<RoleGrants, Map<string, CompiledSpec>>();

function rolesFor(roleDefaults: RoleGrants): Map<string, CompiledSpec> {
  let compiled = roleCache.get(roleDefaults);
  if (compiled === undefined) {
    compiled = compileRoles('role grants', roleDefaults);
    roleCache.set(roleDefaults, compiled);
  }
  return compiled;
}

/**
 * Fills placeholders. Returns undefined when the grant must be dropped: a placeholder whose value is
 * not a plain segment, or a result longer than any topic can be (it could never match).
 */
function fill(t: Template, sub: string | undefined, org: string | undefined): readonly string[] | undefined {
  let out: string[] | undefined;
  let len = t.length - 1;
  for (let i = 0; i < t.length; i++) {
    let s = t[i];
    if (s === SUB || s === ORG) {
      const v = s === SUB ? sub : org;
      if (v === undefined) return undefined;
      out ??= t.slice();
      out[i] = s = v;
    }
    len += s.length;
  }
  if (len > MAX_TOPIC_LENGTH) return undefined;
  return out ?? t;
}

class CompiledGrants implements Grants {
  readonly pub = new Node();
  readonly sub = new Node();
  readonly cmdByType = new Map<string, Node>();
  cmdAny: Node | undefined = undefined;

  canPublish(topic: string): boolean {
    const root = this.pub;
    // `#` grant at the root (admin, service): every non-system topic, without splitting.
    if (root.hash && topic.charCodeAt(0) !== 36) return true;
    if (isEmpty(root)) return false;
    return fromRoot(root, topic.split('/'), matchFrom);
  }

  canSubscribe(pattern: string): boolean {
    const root = this.sub;
    if (root.hash && pattern.charCodeAt(0) !== 36) return true;
    if (isEmpty(root)) return false;
    return fromRoot(root, pattern.split('/'), coverFrom);
  }

  canCommand(type: string, topic: string): boolean {
    const exact = this.cmdByType.get(type);
    const any = this.cmdAny;
    if (exact === undefined && any === undefined) return false;
    const segs = topic.split('/');
    return (
      (exact !== undefined && fromRoot(exact, segs, matchFrom)) ||
      (any !== undefined && fromRoot(any, segs, matchFrom))
    );
  }

  add(spec: CompiledSpec, sub: string | undefined, org: string | undefined): void {
    for (const t of spec.pub) {
      const segs = fill(t, sub, org);
      if (segs !== undefined) insert(this.pub, segs);
    }
    for (const t of spec.sub) {
      const segs = fill(t, sub, org);
      if (segs !== undefined) insert(this.sub, segs);
    }
    for (const c of spec.cmd) {
      const segs = fill(c.topic, sub, org);
      if (segs === undefined) continue;
      let root: Node | undefined;
      if (c.type === '*') {
        root = this.cmdAny ??= new Node();
      } else {
        root = this.cmdByType.get(c.type);
        if (root === undefined) this.cmdByType.set(c.type, (root = new Node()));
      }
      insert(root, segs);
    }
  }
}

/**
 * Compiles the effective grants of `principal`: its `acl` claim (invalid entries ignored) plus the
 * defaults of each of its roles (unknown roles grant nothing). Throws ConfigError if `roleDefaults`
 * is invalid; they are validated once per object and cached.
 */
export function compileGrants(principal: Principal, roleDefaults: RoleGrants): Grants {
  const roles = rolesFor(roleDefaults);
  const sub = isPlainSegment(principal.sub) ? principal.sub : undefined;
  const org = isPlainSegment(principal.org) ? principal.org : undefined;
  const g = new CompiledGrants();
  if (principal.acl !== undefined) g.add(compileClaim(principal.acl), sub, org);
  const seen = new Set<string>();
  for (const role of Array.isArray(principal.roles) ? principal.roles : []) {
    if (typeof role !== 'string' || seen.has(role)) continue;
    seen.add(role);
    const spec = roles.get(role);
    if (spec !== undefined) g.add(spec, sub, org);
  }
  return g;
}
