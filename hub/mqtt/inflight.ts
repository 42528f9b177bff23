import { withPacketId } from './outbound.ts';

/**
 * Outbound QoS 1 window of one connection: packet ids awaiting PUBACK (at most `quota`) and the
 * deliveries waiting for a free slot (at most `maxQueued`). Pure: the session writes what it returns.
 * The bytes of each unacknowledged delivery are kept, so that a persistent session can store them
 * for redelivery with DUP when the connection ends (`pending`).
 */
export class InflightWindow {
  private readonly ids = new Map<number, Buffer>();
  private waiting: { template: Buffer; offset: number; owned: boolean }[] = [];
  private nextId = 1;

  constructor(
    private quota: number,
    private readonly maxQueued: number,
  ) {}

  /** Lowers the window to an MQTT 5 client's Receive Maximum; 0 or undefined (not sent) leaves it. */
  limitTo(receiveMaximum: number | undefined): void {
    if (receiveMaximum) this.quota = Math.min(this.quota, receiveMaximum);
  }

  /**
   * Offers a delivery encoded with its packet id at `offset`: the bytes to write now (a copy
   * carrying a fresh id), `'queued'` while the window is full, or `'full'` when the queue is too.
   * `owned`: the encoding is this connection's alone (a resumed session's queued message), so the
   * id is written into it instead of a copy.
   */
  offer(template: Buffer, offset: number, owned = false): Buffer | 'queued' | 'full' {
    if (this.ids.size < this.quota) return this.sendWithId(template, offset, owned);
    if (this.waiting.length >= this.maxQueued) return 'full';
    this.waiting.push({ template, offset, owned });
    return 'queued';
  }

  /** Frees `id` on PUBACK and returns the next queued delivery to write, if any. Unknown ids change nothing. */
  ack(id: number): Buffer | undefined {
    if (!this.ids.delete(id)) return undefined;
    const next = this.waiting.shift();
    return next ? this.sendWithId(next.template, next.offset, next.owned) : undefined;
  }

  /** Drops the queued deliveries (the connection is gone). */
  clear(): void {
    this.waiting = [];
    this.ids.clear();
  }

  /** Every delivery not acknowledged, oldest first: `sent` ones went out (redelivered with DUP), the others waited. */
  pending(): { bytes: Buffer; sent: boolean }[] {
    return [...[...this.ids.values()].map((bytes) => ({ bytes, sent: true })), ...this.waiting.map((w) => ({ bytes: w.template, sent: false }))];
  }

  /** Ids currently awaiting PUBACK. */
  get inFlight(): number {
    return this.ids.size;
  }

  get queued(): number {
    return this.waiting.length;
  }

  private sendWithId(template: Buffer, offset: number, owned: boolean): Buffer {
    const id = this.allocId();
    const bytes = owned ? template : withPacketId(template, offset, id);
    if (owned) bytes.writeUInt16BE(id, offset);
    this.ids.set(id, bytes);
    return bytes;
  }

  private allocId(): number {
    // Called only with fewer than `quota` (≤ 65535) ids in use, so a free id exists and this ends.
    let id = this.nextId;
    while (this.ids.has(id)) id = id === 65535 ? 1 : id + 1;
    this.nextId = id === 65535 ? 1 : id + 1;
    return id;
  }
}
