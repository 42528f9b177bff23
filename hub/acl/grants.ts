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
import { isPlainSegment, isValidPattern, parsePattern } from './topic.ts';
import { READ_MODELS, type ReadModelName } from '../readmodels/readModels.ts';

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
  /** True when a `read` grant names `model` or is `*` (the query API, docs/query-api.md). */
  canRead(model: ReadModelName): boolean;
}

const SUB = '{sub}';
const ORG = '{org}';
const MAX_COMMAND_TYPE_LENGTH = 128;

/** Values that placeholders stand for, for one principal; undefined when not a plain segment. */
interface Who {
  readonly sub: string | undefined;
  readonly org: string | undefined;
}

/**
 * One node of a grant trie. A `#` grant ends at the node where it appears (`hash`). Placeholder
 * segments stay placeholders (`subPh`, `orgPh`) and are compared with the principal's values during
 * the walk, so tries are built once per role set and shared by every connection: filling `{sub}`
 * in per connection cost ~1.9 KB of tries per device socket.
 */
class Node {
  lit: Map<string, Node> | undefined = undefined;
  plus: Node | undefined = undefined;
  subPh: Node | undefined = undefined;
  orgPh: Node | undefined = undefined;
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
    } else if (s === SUB) {
      n = n.subPh ??= new Node();
    } else if (s === ORG) {
      n = n.orgPh ??= new Node();
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
 * The next node for a concrete segment `s`: tries every branch but one recursively (`rest`), and
 * returns the last candidate to continue with in a loop, or undefined when none is left. A
 * placeholder branch is a candidate only when `s` equals the principal's value, so a placeholder
 * whose value is not a plain segment never matches (the grant is dropped, never widened).
 */
function step(n: Node, s: string, w: Who, rest: (next: Node) => boolean): Node | undefined | true {
  let next: Node | undefined = n.plus;
  const ph = n.orgPh !== undefined && s === w.org ? n.orgPh : undefined;
  if (ph !== undefined) {
    if (next !== undefined && rest(next)) return true;
    next = ph;
  }
  const sp = n.subPh !== undefined && s === w.sub ? n.subPh : undefined;
  if (sp !== undefined) {
    if (next !== undefined && rest(next)) return true;
    next = sp;
  }
  const lit = n.lit?.get(s);
  if (lit !== undefined) {
    if (next !== undefined && rest(next)) return true;
    next = lit;
  }
  return next;
}

/**
 * Topic match from node `n` at segment `i`. Each trie node sits at one depth and each branch is
 * tried at most once per node, so the walk is bounded by trie size.
 */
function matchFrom(n: Node, segs: readonly string[], i: number, w: Who): boolean {
  for (;;) {
    if (i === segs.length) return n.end;
    if (n.hash) return true;
    const j = i + 1;
    const next = step(n, segs[i], w, (m) => matchFrom(m, segs, j, w));
    if (next === true) return true;
    if (next === undefined) return false;
    n = next;
    i = j;
  }
}

/** Subsumption from node `n` at segment `i`: does one grant cover the pattern rest `segs[i..]`? */
function coverFrom(n: Node, segs: readonly string[], i: number, w: Who): boolean {
  for (;;) {
    // A grant `#` here covers any non-empty rest, including a pattern `+`, literal or `#`.
    if (i < segs.length && n.hash) return true;
    if (i === segs.length) return n.end;
    const s = segs[i];
    // A pattern `#` needs a grant `#` at this position or earlier (handled above).
    if (s === '#') return false;
    const j = i + 1;
    if (s === '+') {
      // Only a grant `+` covers every value; a literal or a placeholder covers one.
      if (n.plus === undefined) return false;
      n = n.plus;
    } else {
      const next = step(n, s, w, (m) => coverFrom(m, segs, j, w));
      if (next === true) return true;
      if (next === undefined) return false;
      n = next;
    }
    i = j;
  }
}

/** Root step shared by match and cover: a `$` first segment is only reached through a literal grant. */
function fromRoot(root: Node, segs: readonly string[], w: Who, walk: typeof matchFrom): boolean {
  const first = segs[0];
  if (first.charCodeAt(0) === 36 /* $ */) {
    const next = root.lit?.get(first);
    return next !== undefined && walk(next, segs, 1, w);
  }
  return walk(root, segs, 0, w);
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
  read: string[];
}

const READ_NAMES: ReadonlySet<string> = new Set<string>([...READ_MODELS, '*']);

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
  const out: CompiledSpec = { pub: [], sub: [], cmd: [], read: [] };
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
  if (Array.isArray(s.read)) for (const r of s.read) if (typeof r === 'string' && READ_NAMES.has(r)) out.read.push(r);
  return out;
}

function fail(source: string, where: string, why: string): never {
  throw new ConfigError(`${source}: ${where}: ${why}`);
}

/** Compiles a spec strictly: any invalid entry throws ConfigError naming `source` and the entry. */
function compileRole(source: string, role: string, spec: unknown): CompiledSpec {
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) {
    fail(source, `role "${role}"`, 'must be an object like {"pub":[..],"sub":[..],"cmd":[..],"read":[..]}');
  }
  const out: CompiledSpec = { pub: [], sub: [], cmd: [], read: [] };
  for (const key of Object.keys(spec)) {
    if (key !== 'pub' && key !== 'sub' && key !== 'cmd' && key !== 'read') {
      fail(source, `role "${role}"`, `unknown key "${key}" (allowed: pub, sub, cmd, read)`);
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
  const read: unknown = s.read;
  if (read !== undefined) {
    if (!Array.isArray(read)) fail(source, `role "${role}" read`, `must be an array of read models (${[...READ_NAMES].join(', ')})`);
    read.forEach((r: unknown, i: number) => {
      if (typeof r !== 'string' || !READ_NAMES.has(r)) fail(source, `role "${role}" read[${i}] ${JSON.stringify(r)}`, `unknown read model (allowed: ${[...READ_NAMES].join(', ')})`);
      out.read.push(r);
    });
  }
  return out;
}

function compileRoles(source: string, r: unknown): Map<string, CompiledSpec> {
  if (r === null || typeof r !== 'object' || Array.isArray(r)) {
    throw new ConfigError(`${source}: must be an object mapping role names to {"pub","sub","cmd","read"}`);
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

/** Grant tries with placeholders kept, built once per role set (or per `acl` claim). */
class GrantTries {
  readonly pub = new Node();
  readonly sub = new Node();
  readonly cmdByType = new Map<string, Node>();
  cmdAny: Node | undefined = undefined;
  readonly read = new Set<string>();

  add(spec: CompiledSpec): void {
    for (const r of spec.read) this.read.add(r);
    for (const t of spec.pub) insert(this.pub, t);
    for (const t of spec.sub) insert(this.sub, t);
    for (const c of spec.cmd) {
      let root: Node | undefined;
      if (c.type === '*') {
        root = this.cmdAny ??= new Node();
      } else {
        root = this.cmdByType.get(c.type);
        if (root === undefined) this.cmdByType.set(c.type, (root = new Node()));
      }
      insert(root, c.topic);
    }
  }

  canPublish(topic: string, w: Who): boolean {
    const root = this.pub;
    // `#` grant at the root (admin, service): every non-system topic, without splitting.
    if (root.hash && topic.charCodeAt(0) !== 36) return true;
    if (isEmpty(root)) return false;
    return fromRoot(root, topic.split('/'), w, matchFrom);
  }

  canSubscribe(pattern: string, w: Who): boolean {
    const root = this.sub;
    if (root.hash && pattern.charCodeAt(0) !== 36) return true;
    if (isEmpty(root)) return false;
    return fromRoot(root, pattern.split('/'), w, coverFrom);
  }

  canCommand(type: string, topic: string, w: Who): boolean {
    const exact = this.cmdByType.get(type);
    const any = this.cmdAny;
    if (exact === undefined && any === undefined) return false;
    const segs = topic.split('/');
    return (exact !== undefined && fromRoot(exact, segs, w, matchFrom)) || (any !== undefined && fromRoot(any, segs, w, matchFrom));
  }

  canRead(model: string): boolean {
    return this.read.has(model) || this.read.has('*');
  }
}

/** One principal's grants: shared role tries, its own claim tries (if any), and its placeholder values. */
class BoundGrants implements Grants, Who {
  constructor(
    private readonly roles: GrantTries | undefined,
    private readonly claim: GrantTries | undefined,
    readonly sub: string | undefined,
    readonly org: string | undefined,
  ) {}

  canPublish(topic: string): boolean {
    return (this.roles?.canPublish(topic, this) ?? false) || (this.claim?.canPublish(topic, this) ?? false);
  }

  canSubscribe(pattern: string): boolean {
    return (this.roles?.canSubscribe(pattern, this) ?? false) || (this.claim?.canSubscribe(pattern, this) ?? false);
  }

  canCommand(type: string, topic: string): boolean {
    return (this.roles?.canCommand(type, topic, this) ?? false) || (this.claim?.canCommand(type, topic, this) ?? false);
  }

  canRead(model: ReadModelName): boolean {
    return (this.roles?.canRead(model) ?? false) || (this.claim?.canRead(model) ?? false);
  }
}

/** Role-set tries per role-defaults object, keyed by the principal's distinct known roles in order. */
const roleTriesCache = new WeakMap<RoleGrants, Map<string, GrantTries | undefined>>();

function roleTries(roleDefaults: RoleGrants, roleList: readonly unknown[]): GrantTries | undefined {
  const roles = rolesFor(roleDefaults);
  const known: string[] = [];
  for (const r of roleList) if (typeof r === 'string' && roles.has(r) && !known.includes(r)) known.push(r);
  if (known.length === 0) return undefined;
  const key = known.join('\u0000');
  let byKey = roleTriesCache.get(roleDefaults);
  if (byKey === undefined) roleTriesCache.set(roleDefaults, (byKey = new Map()));
  let tries = byKey.get(key);
  if (tries === undefined) {
    tries = new GrantTries();
    for (const r of known) tries.add(roles.get(r)!);
    byKey.set(key, tries);
  }
  return tries;
}

/**
 * Compiles the effective grants of `principal`: its `acl` claim (invalid entries ignored) plus the
 * defaults of each of its roles (unknown roles grant nothing). Throws ConfigError if `roleDefaults`
 * is invalid; they are validated once per object and cached. Role tries are shared across
 * principals; only a principal with an `acl` claim gets tries of its own.
 */
export function compileGrants(principal: Principal, roleDefaults: RoleGrants): Grants {
  const sub = isPlainSegment(principal.sub) ? principal.sub : undefined;
  const org = isPlainSegment(principal.org) ? principal.org : undefined;
  const shared = roleTries(roleDefaults, Array.isArray(principal.roles) ? principal.roles : []);
  let claim: GrantTries | undefined;
  if (principal.acl !== undefined) {
    claim = new GrantTries();
    claim.add(compileClaim(principal.acl));
  }
  return new BoundGrants(shared, claim, sub, org);
}
