import { describe, it } from 'node:test';
import { runConformance } from './conformance.ts';
import { createEsdbEventStore } from './esdbEventStore.ts';

const url = process.env.EVENTSTORE_URL;
const SKIPPED = 'EVENTSTORE_URL not set: EventStoreDB adapter conformance skipped';

if (url) {
  runConformance('eventstoredb event store', () => createEsdbEventStore({ connectionString: url }));
} else {
  describe('eventstoredb event store conformance', () => {
    it(SKIPPED, { skip: SKIPPED }, () => {});
  });
}
