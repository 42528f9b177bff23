/**
 * Fair use of the event loop between orgs (issue 9), pure: which inbound frame runs next. The
 * transport (hub/transport/ws/inbound.ts) does the I/O; this class only keeps the accounts.
 *
 * - A turn is one pass of the event loop's I/O phase. While an org has used less than
 *   `budgetMs` of the current turn, its connections' frames run inline, as they arrive.
 * - Past that, or once a connection has frames waiting (so order is kept per connection), its
 *   frames wait in the transport's per-connection queue and the connection is `ready`.
 * - Waiting frames are drained in slices (`sliceMs`) between turns, one frame at a time,
 *   round-robin over orgs and, inside an org, over its ready connections. A slice ends the turn:
 *   every org's budget is fresh again for the next I/O phase, so another org's frame, or its
 *   database result, waits at most one org's budget plus one slice.
 */
export interface OrgTurnsOptions {
  /** Inline time each org may use per turn, ms. */
  budgetMs: number;
  /** Time one drain slice may take, ms. */
  sliceMs: number;
}

export class OrgTurns<C> {
  /** Inline time used per org in the current turn (only orgs that ran this turn). */
  private readonly used = new Map<string, number>();
  /** Orgs with ready connections, in round-robin order; the head goes next. */
  private readonly orgs: string[] = [];
  /** org → its ready connections, in round-robin order. */
  private readonly ready = new Map<string, C[]>();

  constructor(readonly opts: OrgTurnsOptions) {}

  /** May a frame of `org` run inline now? (The caller checks its connection's own queue first.) */
  inline(org: string): boolean {
    const u = this.used.get(org);
    return u === undefined || u < this.opts.budgetMs;
  }

  /** `ms` of inline work was done for `org` in this turn. */
  charge(org: string, ms: number): void {
    this.used.set(org, (this.used.get(org) ?? 0) + ms);
  }

  /** `conn` of `org` has frames waiting (call once, when its queue becomes non-empty or it may run again). */
  add(org: string, conn: C): void {
    let q = this.ready.get(org);
    if (!q) {
      this.ready.set(org, (q = []));
      this.orgs.push(org);
    }
    q.push(conn);
  }

  /** True while some connection has frames waiting. */
  get pending(): boolean {
    return this.orgs.length > 0;
  }

  /**
   * The next connection to run one frame of, round-robin over orgs then connections; it leaves
   * the ready set: the caller gives it back with `add` when frames still wait after that one.
   */
  next(): { org: string; conn: C } | undefined {
    const org = this.orgs.shift();
    if (org === undefined) return undefined;
    const q = this.ready.get(org)!;
    const conn = q.shift()!;
    if (q.length > 0) this.orgs.push(org);
    else this.ready.delete(org);
    return { org, conn };
  }

  /** A new turn: every org's inline budget is fresh. */
  newTurn(): void {
    this.used.clear();
  }
}
