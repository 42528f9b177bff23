/**
 * Subscription patterns of one org, indexed by segment, so that one message is matched against
 * all of them in one walk of its topic (cost grows with the topic's depth and the matches, not with
 * the number of patterns). Semantics are those of `matches()` in acl/topic.ts: `+` is one segment,
 * a final `#` one or more, and a pattern starting with `+` or `#` never matches a `$` topic.
 * Patterns must already be valid.
 */
export class PatternIndex<T> {
  private readonly root = new Node<T>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  add(pattern: string, value: T): void {
    let n = this.root;
    const segs = pattern.split('/');
    for (let i = 0; i < segs.length; i++) {
      const s = segs[i];
      if (s === '#') {
        n.hash.push(value);
        this.count++;
        return;
      }
      let next = s === '+' ? n.plus : n.children?.get(s);
      if (!next) {
        next = new Node<T>();
        if (s === '+') n.plus = next;
        else (n.children ??= new Map()).set(s, next);
      }
      n = next;
    }
    n.exact.push(value);
    this.count++;
  }

  /** Removes one `value` added under `pattern`; false when it was not there. */
  remove(pattern: string, value: T): boolean {
    const segs = pattern.split('/');
    const path: Node<T>[] = [this.root];
    let n: Node<T> | undefined = this.root;
    let list: T[] | undefined;
    for (let i = 0; i < segs.length && n; i++) {
      const s = segs[i];
      if (s === '#') {
        list = n.hash;
        break;
      }
      n = s === '+' ? n.plus : n.children?.get(s);
      if (n) path.push(n);
      if (n && i === segs.length - 1) list = n.exact;
    }
    const at = list ? list.indexOf(value) : -1;
    if (!list || at < 0) return false;
    list.splice(at, 1);
    this.count--;
    // Prune empty nodes bottom-up so the index does not grow with patterns that came and went.
    for (let i = path.length - 1; i > 0; i--) {
      const node = path[i];
      if (!node.empty) break;
      const parent = path[i - 1];
      const seg = segs[i - 1];
      if (seg === '+') parent.plus = undefined;
      else parent.children?.delete(seg);
    }
    return true;
  }

  /** Calls `fn` once per (pattern, value) that matches `topic`. */
  match(topic: string, fn: (value: T) => void): void {
    const segs = topic.split('/');
    const system = topic.charCodeAt(0) === 36; /* $ */
    walk(this.root, segs, 0, fn, system);
  }
}

class Node<T> {
  children: Map<string, Node<T>> | undefined;
  plus: Node<T> | undefined;
  /** Values of patterns ending here. */
  exact: T[] = [];
  /** Values of patterns ending with `#` right below here. */
  hash: T[] = [];

  get empty(): boolean {
    return this.exact.length === 0 && this.hash.length === 0 && !this.plus && (!this.children || this.children.size === 0);
  }
}

function walk<T>(n: Node<T>, segs: string[], i: number, fn: (value: T) => void, system: boolean): void {
  if (i === segs.length) {
    for (const v of n.exact) fn(v);
    return;
  }
  // At the root, a `$` topic is matched by literal first segments only.
  const wild = !(system && i === 0);
  if (wild) for (const v of n.hash) fn(v);
  const child = n.children?.get(segs[i]);
  if (child) walk(child, segs, i + 1, fn, system);
  if (wild && n.plus) walk(n.plus, segs, i + 1, fn, system);
}
