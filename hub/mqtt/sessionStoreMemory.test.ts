import { describe } from 'node:test';
import { sessionStoreConformance } from './sessionStoreConformance.ts';
import { createMemorySessionStore } from './sessionStoreMemory.ts';

describe('mqtt session store (memory)', () => sessionStoreConformance(async () => createMemorySessionStore()));
