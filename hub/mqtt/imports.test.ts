import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dir = fileURLToPath(new URL('.', import.meta.url));

/** Module specifiers of `import … from`, `export … from`, `import '…'` and `import('…')` (the project's TypeScript 7 has no JS parser API). */
const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(?\s*)'([^']+)'/g;

/** The hub/mqtt files each non-test source file imports (type-only imports too). */
function importGraph(): Map<string, string[]> {
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'));
  const graph = new Map<string, string[]>();
  for (const f of files) {
    const specs = [...readFileSync(dir + f, 'utf8').matchAll(SPECIFIER)].map((m) => m[1]);
    graph.set(f, specs.filter((n) => n.startsWith('./')).map((n) => n.slice(2)));
  }
  return graph;
}

/** One import cycle of `graph`, as a path that ends where it starts; undefined when there is none. */
export function findCycle(graph: Map<string, string[]>): string[] | undefined {
  const done = new Set<string>();
  const path: string[] = [];
  const visit = (f: string): string[] | undefined => {
    const at = path.indexOf(f);
    if (at >= 0) return [...path.slice(at), f];
    if (done.has(f)) return undefined;
    path.push(f);
    for (const next of graph.get(f) ?? []) {
      const c = visit(next);
      if (c) return c;
    }
    path.pop();
    done.add(f);
    return undefined;
  };
  for (const f of graph.keys()) {
    const c = visit(f);
    if (c) return c;
  }
  return undefined;
}

describe('mqtt imports', () => {
  it('no import cycle runs through hub/mqtt (type-only imports count too)', () => {
    const graph = importGraph();
    assert.ok(graph.size > 20 && (graph.get('mqttSession.ts') ?? []).includes('sessionPersistence.ts'), 'the graph was read');
    assert.equal(findCycle(graph)?.join(' -> '), undefined);
  });

  it('the cycle finder finds a cycle it is shown (positive control)', () => {
    assert.deepEqual(findCycle(new Map([['a.ts', ['b.ts']], ['b.ts', ['c.ts']], ['c.ts', ['a.ts']]])), ['a.ts', 'b.ts', 'c.ts', 'a.ts']);
    assert.equal(findCycle(new Map([['a.ts', ['b.ts']], ['b.ts', []]])), undefined);
  });
});
