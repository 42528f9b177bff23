import type { AuditMeta, AuditSink, AuditType } from './audit.ts';

/** Types a flood can repeat at message rate: aggregated per window instead of recorded each time. */
const FLOODABLE: ReadonlySet<AuditType> = new Set<AuditType>(['publish.denied', 'limit.hit', 'subscribe.denied', 'command.denied']);

interface Window {
  org: string | undefined;
  type: AuditType;
  sample: Record<string, unknown>;
  meta: AuditMeta | undefined;
  count: number;
}

/**
 * Wraps an audit sink so that denials and limit hits cannot turn a flood into an audit flood. The
 * first event of each key in a window is recorded at once; the repeats are counted, and at the end
 * of the window one more event carries `count` (the repeats) and `windowMs`, with the first repeat
 * as its sample. The key is (org, type, limit, transport, topic, pattern, command type) for the
 * first `perOrgKeys` keys of an org in a window, then only (org, type, limit, transport): an org
 * that varies its topics gets at most `perOrgKeys` + a few events per window. Past `maxKeys` keys
 * on the node, repeats are only counted in `suppressed`.
 */
export function createAggregatingAuditSink(inner: AuditSink, opts: { windowMs?: number; maxKeys?: number; perOrgKeys?: number } = {}): AuditSink & { readonly suppressed: number } {
  const windowMs = opts.windowMs ?? 10_000;
  const maxKeys = opts.maxKeys ?? 10_000;
  const perOrgKeys = opts.perOrgKeys ?? 100;
  let current = new Map<string, Window | null>();
  let perOrg = new Map<string, number>();
  let suppressed = 0;
  const flush = () => {
    const done = current;
    current = new Map();
    perOrg = new Map();
    for (const w of done.values()) {
      if (w && w.count > 0) inner.record(w.org, w.type, { ...w.sample, aggregated: true, count: w.count, windowMs }, w.meta);
    }
  };
  const timer = setInterval(flush, windowMs);
  timer.unref();

  return {
    record(org, type, data, meta) {
      if (!FLOODABLE.has(type)) return inner.record(org, type, data, meta);
      const o = org ?? '';
      const coarse = `${o}\u0000${type}\u0000${String(data.limit ?? '')}\u0000${String(data.transport ?? '')}`;
      let key = `${coarse}\u0000${String(data.topic ?? '')}\u0000${String(data.pattern ?? '')}\u0000${String(data.type ?? '')}`;
      let w = current.get(key);
      if (w === undefined) {
        const n = perOrg.get(o) ?? 0;
        if (n >= perOrgKeys) {
          key = coarse;
          w = current.get(key);
        } else perOrg.set(o, n + 1);
      }
      if (w === undefined) {
        if (current.size >= maxKeys) {
          suppressed++;
          return;
        }
        // First in this window: recorded now; null marks "seen, no repeat yet".
        current.set(key, null);
        return inner.record(org, type, data, meta);
      }
      if (w === null) current.set(key, { org, type, sample: data, meta, count: 1 });
      else w.count++;
    },
    stats: () => inner.stats(),
    get suppressed() {
      return suppressed;
    },
    async close() {
      clearInterval(timer);
      flush();
      await inner.close();
    },
  };
}
