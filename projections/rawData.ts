import type { RecordedEvent } from '../hub/eventstore/eventStore.ts';

/**
 * The JSON text each event's data was read as (set by pgEventReader), so folds that store data
 * verbatim skip a JSON.stringify; events from elsewhere (tests, store.readAll) fall back to it.
 * A symbol-keyed property set in the event's object literal, not a WeakMap: a WeakMap entry per
 * event cost a hash insertion each and made every garbage collection walk them (ephemerons).
 */
export const RAW_DATA: unique symbol = Symbol('orghub.rawData');

/** An event as pgEventReader builds it: with the text of its data beside the parsed value. */
export type WithRawData = RecordedEvent & { [RAW_DATA]?: string };

/** `JSON.stringify(e.data)`, or the text it was read as (the same jsonb value). */
export function dataJson(e: RecordedEvent): string {
  return (e as WithRawData)[RAW_DATA] ?? JSON.stringify(e.data);
}
