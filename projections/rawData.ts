import type { RecordedEvent } from '../hub/eventstore/eventStore.ts';

/**
 * The JSON text each event's data was read as (set by pgEventReader), so folds that store data
 * verbatim skip a JSON.stringify; events from elsewhere (tests, store.readAll) fall back to it.
 */
const rawData = new WeakMap<RecordedEvent, string>();

export function rememberDataJson(e: RecordedEvent, text: string): void {
  rawData.set(e, text);
}

/** `JSON.stringify(e.data)`, or the text it was read as (the same jsonb value). */
export function dataJson(e: RecordedEvent): string {
  return rawData.get(e) ?? JSON.stringify(e.data);
}
