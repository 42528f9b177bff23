import type { Logger } from '../log.ts';
import type { AuditSink } from './audit.ts';

/** Audit sink that only logs: used where no event store is configured (tests of the transport alone). */
export function createLogAuditSink(log: Logger): AuditSink {
  return {
    record(org, type, data, meta) {
      log.info({ audit: type, org, ...meta, data }, 'audit');
    },
    stats: () => ({ backlog: 0, dropped: 0 }),
    close: async () => {},
  };
}
