/**
 * When fleet commands expire, kept where every node sees it (Redis adapter:
 * `redisExpirySchedule.ts`). The issuing node's timer records `expired` on time; if that node dies,
 * any other node's sweep claims the due entry and records it (the terminal event's idempotency key
 * lets exactly one `expired` in, so two nodes racing do no harm).
 */
export interface DueCommand {
  org: string;
  deviceId: string;
  commandId: string;
}

export interface ExpirySchedule {
  add(cmds: readonly DueCommand[], expiresAt: number): Promise<void>;
  /** The command ended (acked, cancelled, expired): nothing to do at its expiry. */
  remove(cmd: DueCommand): Promise<void>;
  /**
   * Up to `max` entries due at `now`, each leased to the caller for `leaseMs` (another node takes
   * it after that, should this one die before it calls `remove`).
   */
  claimDue(now: number, max: number, leaseMs: number): Promise<DueCommand[]>;
  close(): Promise<void>;
}
