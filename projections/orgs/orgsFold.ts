import type { RecordedEvent } from '../../hub/eventstore/eventStore.ts';

/** What one batch says about an org: the time span of its events. */
export interface OrgSpan {
  org_id: string;
  first_event_at: string;
  last_event_at: string;
}

/**
 * Every org that has any event gets a row (status `active`, retention 90 days by default). ISO
 * times of one format compare as strings. Org lifecycle events (another issue) extend this fold.
 */
export function foldOrgs(events: readonly RecordedEvent[]): OrgSpan[] {
  const spans = new Map<string, OrgSpan>();
  for (const e of events) {
    const s = spans.get(e.org);
    if (!s) spans.set(e.org, { org_id: e.org, first_event_at: e.recordedAt, last_event_at: e.recordedAt });
    else {
      if (e.recordedAt < s.first_event_at) s.first_event_at = e.recordedAt;
      if (e.recordedAt > s.last_event_at) s.last_event_at = e.recordedAt;
    }
  }
  return [...spans.values()];
}
