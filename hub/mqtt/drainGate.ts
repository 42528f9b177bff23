/**
 * The MQTT side of a graceful drain (docs/operations.md "Graceful drain"): once `close()` is called
 * new commands are refused (the client retries on another node), the commands already being
 * appended are awaited (`idle`), and the writes a closing session leaves behind (parking a
 * persistent session in Redis) are awaited before the stores close (`flushed`). Both waits are
 * bounded by the caller's deadline.
 */
export class DrainGate {
  private closed = false;
  private inflight = 0;
  private readonly writes = new Set<Promise<unknown>>();
  private wakeIdle: (() => void) | undefined;

  /** True once the node drains: refuse new work. */
  get draining(): boolean {
    return this.closed;
  }

  get inFlight(): number {
    return this.inflight;
  }

  close(): void {
    this.closed = true;
  }

  /** Counts `p` as in-flight work (a command being appended) until it settles; returns `p`. */
  track<T>(p: Promise<T>): Promise<T> {
    this.inflight++;
    const done = () => {
      if (--this.inflight === 0) this.wakeIdle?.();
    };
    p.then(done, done);
    return p;
  }

  /** A write that must reach its store before the store closes (errors are the writer's to log). */
  flushLater(p: Promise<unknown>): void {
    const settled: Promise<unknown> = p.then(
      (): unknown => this.writes.delete(settled),
      (): unknown => this.writes.delete(settled),
    );
    this.writes.add(settled);
  }

  /** Resolves when no tracked work is in flight, or at `deadline` (ms since epoch); true when idle. */
  async idle(deadline: number): Promise<boolean> {
    if (this.inflight === 0) return true;
    await untilOr(deadline, new Promise<void>((resolve) => (this.wakeIdle = resolve)));
    this.wakeIdle = undefined;
    return this.inflight === 0;
  }

  /** Resolves when every `flushLater` write has settled, or at `deadline`; true when all did. */
  async flushed(deadline: number): Promise<boolean> {
    if (this.writes.size === 0) return true;
    await untilOr(deadline, Promise.allSettled([...this.writes]));
    return this.writes.size === 0;
  }
}

async function untilOr(deadline: number, p: Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, deadline - Date.now()))));
  await Promise.race([p, timeout]);
  clearTimeout(timer);
}
