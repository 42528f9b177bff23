/**
 * The org-wide bound on open fleet commands (ORGHUB_FLEET_MAX_OPEN): every command that is neither
 * terminal nor past its expiry holds one slot of its org until it ends. Slots are shared by every
 * node (Redis adapter: `redisOpenCommands.ts`); a slot whose command expired is free by itself, so
 * a node that dies before it records an end leaks nothing past the expiry.
 */
export interface OpenCommands {
  /**
   * Takes one slot per id (all or none) if the org then holds at most `max`; expired slots are
   * freed first. `open` is the org's count after the call (before it, when refused).
   */
  admit(org: string, ids: readonly string[], expiresAt: number, max: number): Promise<{ ok: boolean; open: number }>;
  /** Frees the slots of commands that ended (acked, cancelled, expired) or were never recorded. */
  release(org: string, ids: readonly string[]): Promise<void>;
  close(): Promise<void>;
}
