/** A message of a history stream as it reaches one subscriber; live ones from raw NATS publishers may lack a position. */
export interface Positioned {
  offset?: number;
  epoch?: string;
}

/**
 * Puts one subscriber's messages of one stream in offset order, exactly once: duplicates (offset
 * already delivered) are dropped, and a message ahead of a gap is held until the gap is filled
 * (from a live copy that arrives late, or from the store) or given up with `skipTo`. Pure: the
 * caller does the reading and the sending.
 */
export class Sequencer<M extends Positioned> {
  private readonly held = new Map<number, M>();

  constructor(
    /** Offset of the last message delivered (0: none). */
    public last: number,
    public epoch: string,
    private readonly maxHeld = 10_000,
  ) {}

  /** The messages that can be delivered now, in order. */
  push(m: M): M[] {
    if (m.offset === undefined || m.epoch === undefined) return [m];
    if (m.epoch !== this.epoch) {
      // The stream started a new life (expired, then published again): follow it from this message.
      this.epoch = m.epoch;
      this.last = m.offset - 1;
      this.held.clear();
    }
    if (m.offset <= this.last) return [];
    if (m.offset > this.last + 1) {
      this.held.set(m.offset, m);
      return this.held.size > this.maxHeld ? this.skipTo(Math.min(...this.held.keys()) - 1) : [];
    }
    this.last = m.offset;
    return [m, ...this.drain()];
  }

  /** The missing range before the oldest held message, if any. */
  gap(): { from: number; to: number } | undefined {
    if (this.held.size === 0) return undefined;
    let min = Infinity;
    for (const k of this.held.keys()) if (k < min) min = k;
    return { from: this.last + 1, to: min - 1 };
  }

  /** Gives up on everything up to `offset` (not in the store any more) and returns what follows. */
  skipTo(offset: number): M[] {
    if (offset > this.last) this.last = offset;
    for (const k of this.held.keys()) if (k <= this.last) this.held.delete(k);
    return this.drain();
  }

  get holding(): number {
    return this.held.size;
  }

  private drain(): M[] {
    const out: M[] = [];
    for (let next = this.held.get(this.last + 1); next !== undefined; next = this.held.get(this.last + 1)) {
      this.held.delete(this.last + 1);
      this.last++;
      out.push(next);
    }
    return out;
  }
}
