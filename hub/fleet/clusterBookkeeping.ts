import { HubError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { DueCommand, ExpirySchedule } from './expirySchedule.ts';
import type { OpenCommands } from './openCommands.ts';

/** An expiry is left to its issuing node's timer for this long before any node's sweep takes it. */
const SWEEP_GRACE_MS = 2000;
/** A claimed expiry another node may take over after this long (the claimer died meanwhile). */
const SWEEP_LEASE_MS = 30_000;

export interface ClusterBookkeepingDeps {
  open?: OpenCommands;
  expiries?: ExpirySchedule;
  log: Logger;
  /** ORGHUB_FLEET_MAX_OPEN. */
  maxOpenPerOrg: number;
  sweepMs?: number;
  /** Records `expired` if due; true once nothing is left to do for the command. */
  expire(cmd: DueCommand): Promise<boolean>;
}

/**
 * What fleet keeps beside the event store, shared by every node: the org-wide open-command slots
 * (ORGHUB_FLEET_MAX_OPEN) and the expiry schedule, with this node's sweep of expiries whose issuing
 * node died. Both are best effort over Redis: while it is down the bound is not enforced (fail
 * open, as for the rate limits; the per-device bound still holds) and only the issuing node's timer
 * (and delivery reads) expire commands.
 */
export function createClusterBookkeeping(deps: ClusterBookkeepingDeps) {
  const { open, expiries, log } = deps;
  let sweeping = false;
  const sweepOnce = async () => {
    if (sweeping || !expiries) return;
    sweeping = true;
    try {
      for (const due of await expiries.claimDue(Date.now() - SWEEP_GRACE_MS, 100, SWEEP_LEASE_MS)) {
        const done = await deps.expire(due).catch((err) => {
          log.warn({ err: (err as Error).message, commandId: due.commandId }, 'fleet expiry not recorded by the sweep; retried after the lease');
          return false;
        });
        if (done) unschedule(due);
      }
    } catch (err) {
      log.debug({ err: (err as Error).message }, 'fleet expiry sweep skipped (Redis unavailable)');
    } finally {
      sweeping = false;
    }
  };
  const sweep = expiries ? setInterval(() => void sweepOnce(), deps.sweepMs ?? 1000) : undefined;
  sweep?.unref();

  const unschedule = (cmd: DueCommand) => {
    expiries?.remove(cmd).catch((err) => log.debug({ err: (err as Error).message, commandId: cmd.commandId }, 'fleet expiry not unscheduled; the sweep finds it ended'));
  };

  return {
    /** Takes one slot per new command (all or none); `limit` past the org's bound. */
    async admit(org: string, ids: string[], expiresAt: number): Promise<void> {
      if (!open) return;
      let r: { ok: boolean; open: number };
      try {
        r = await open.admit(org, ids, expiresAt, deps.maxOpenPerOrg);
      } catch (err) {
        log.warn({ err: (err as Error).message, org }, 'fleet open-command bound not checked (Redis unavailable); admitted');
        return;
      }
      if (!r.ok) throw new HubError('limit', `the org has ${r.open} open fleet commands and may have at most ${deps.maxOpenPerOrg} (ORGHUB_FLEET_MAX_OPEN); ${ids.length > 1 ? `this bulk command needs ${ids.length}` : 'wait for one to end or cancel one'}`);
    },
    /** Frees slots; a slot that stays (Redis down) is freed by itself at the command's expiry. */
    release(org: string, ids: string[]): void {
      open?.release(org, ids).catch((err) => log.debug({ err: (err as Error).message, org }, 'fleet open-command slot not freed; it expires with the command'));
    },
    schedule(cmds: DueCommand[], at: number): void {
      expiries?.add(cmds, at).catch((err) => log.warn({ err: (err as Error).message, commands: cmds.length }, "fleet expiry not scheduled cluster-wide; only this node's timer will expire it"));
    },
    unschedule,
    close(): void {
      if (sweep) clearInterval(sweep);
      void open?.close().catch(() => {});
      void expiries?.close().catch(() => {});
    },
  };
}
