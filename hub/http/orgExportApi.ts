import { isOrgId } from '../access/org.ts';
import { formatPosition, parsePosition, START, type EventStore, type Position, type RecordedEvent } from '../eventstore/eventStore.ts';
import { HubError } from '../errors.ts';
import { adminRoute, type AdminRouteDeps } from './adminRoute.ts';
import type { StreamWriter } from './respond.ts';

/** Events per page read from the store; one page is in memory at a time. */
const PAGE = 500;
/** A position is two unsigned 64-bit integers at most. */
const AFTER_RE = /^\d{1,20}:\d{1,20}$/;

/** One exported event as an NDJSON line. `position` is what `?after=` takes to resume after it. */
export function exportLine(e: RecordedEvent): string {
  return `${JSON.stringify({
    position: formatPosition(e.position), id: e.id, stream: e.stream, type: e.type, schemaVersion: e.schemaVersion,
    data: e.data, metadata: e.metadata, recordedAt: e.recordedAt, streamPosition: e.streamPosition.toString(), globalPosition: e.globalPosition.toString(),
  })}\n`;
}

/** `?after=tx:pos` (optional, nothing else): where the export starts, exclusive. */
export function parseExportQuery(query: string): Position {
  const q = new URLSearchParams(query);
  for (const k of q.keys()) if (k !== 'after') throw new HubError('invalid', `unknown query parameter "${k.slice(0, 64)}"`);
  const after = q.get('after');
  if (after === null) return START;
  if (!AFTER_RE.test(after)) throw new HubError('invalid', 'after must be a position "tx:pos" from a previous export line');
  return parsePosition(after);
}

/**
 * GET /v1/orgs/{org}/export (platform role): every event of the org, in global order, as NDJSON
 * (docs/access.md "Offboarding"). Streamed a page at a time with uWS backpressure; a cut transfer
 * resumes with `?after=` set to the `position` of the last line received. The first page is read
 * before anything is sent, so a store that is down gets a clean 503. Audited in the operator's org.
 */
export function mountOrgExport(deps: AdminRouteDeps & { store?: EventStore }, opts: { role: string }): void {
  adminRoute(deps, 'get', '/v1/orgs/:org/export', 'org.export', { role: opts.role, params: 1 }, async (req) => {
    const org = req.params[0]!;
    if (!isOrgId(org)) throw new HubError('not_found', 'no such org');
    const after = parseExportQuery(req.query);
    const store = deps.store;
    if (!store) throw new HubError('unavailable', 'no event store: nothing to export');
    const read = async (from: Position) => {
      try {
        return await store.readAll({ org, after: from, batchSize: PAGE });
      } catch (err) {
        throw new HubError('unavailable', 'event store unavailable', { cause: err });
      }
    };
    let batch = await read(after);
    // Audited in the operator's org: an event in the exported org would change what is exported,
    // and would outlive an offboarding that follows.
    deps.audit.record(req.principal.org, 'admin.action', { action: 'org.export', org, after: formatPosition(after) }, { actor: req.principal.sub, session: req.requestId });
    return {
      stream: async (r) => {
        const out: StreamWriter = r.stream({ 'content-type': 'application/x-ndjson', 'cache-control': 'no-store', 'content-disposition': `attachment; filename="${org}.ndjson"` });
        try {
          for (;;) {
            // A page's events are all the org's (the store filters by org under RLS); checked again all the same.
            const text = batch.events.filter((e) => e.org === org).map(exportLine).join('');
            if (!(await out.write(text))) return; // the client left
            if (batch.caughtUp) break;
            batch = await store.readAll({ org, after: batch.next, batchSize: PAGE });
          }
        } catch (err) {
          deps.log.warn({ err: (err as Error).message, org }, 'org export failed mid-stream; connection cut (resume with ?after=)');
          out.fail();
          return;
        }
        out.end();
      },
    };
  });
}
