import { randomUUID } from 'node:crypto';
import type { RecordedEvent } from '../hub/eventstore/eventStore.ts';

let pos = 0n;
/** A recorded event for pure fold tests (no store involved). */
export function recorded(org: string, stream: string, type: string, data: unknown, metadata: Partial<RecordedEvent['metadata']> = {}, recordedAt = new Date().toISOString()): RecordedEvent {
  pos += 1n;
  return {
    id: randomUUID(), org, stream, type, schemaVersion: 1, data, metadata: { actor: 'alice', ...metadata }, recordedAt,
    streamPosition: 0n, globalPosition: pos, position: { tx: 100n, pos },
  };
}
