/**
 * The fleet deliveries one connection holds: the detacher of each `$commands/<device>`
 * subscription (hub/fleet serves them from the event store, not the bus), called at unsubscribe
 * or close.
 */
export class FleetHolds {
  private byPattern: Map<string, () => void> | undefined;

  /** Keeps `detach` for `pattern`, or detaches at once when `keep` is false (closed or unsubscribed meanwhile). */
  hold(pattern: string, detach: () => void, keep: boolean): void {
    if (!keep) return detach();
    this.byPattern?.get(pattern)?.();
    (this.byPattern ??= new Map()).set(pattern, detach);
  }

  /** Detaches `pattern`; false when it holds none. */
  drop(pattern: string): boolean {
    const detach = this.byPattern?.get(pattern);
    if (!detach) return false;
    this.byPattern!.delete(pattern);
    detach();
    return true;
  }

  /** Detaches everything (the connection is gone). */
  clear(): void {
    for (const detach of this.byPattern?.values() ?? []) detach();
    this.byPattern = undefined;
  }
}
