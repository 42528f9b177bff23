import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { InflightWindow } from './inflight.ts';
import { encodePublish, packetIdOffset } from './outbound.ts';

const tpl = encodePublish({ topic: 'a/b', payload: Buffer.from('x'), retain: false }, 1, 4);
const off = packetIdOffset(tpl);
const idOf = (r: Buffer | string | undefined) => {
  assert.ok(Buffer.isBuffer(r), `expected bytes, got ${String(r)}`);
  return r.readUInt16BE(off);
};

describe('mqtt inflight window', () => {
  it('ids - allocated 1, 2, 3 … and patched into a copy, never into the shared template', () => {
    const w = new InflightWindow(10, 10);
    assert.deepEqual([idOf(w.offer(tpl, off)), idOf(w.offer(tpl, off)), idOf(w.offer(tpl, off))], [1, 2, 3]);
    assert.equal(tpl.readUInt16BE(off), 1);
    assert.equal(w.inFlight, 3);
  });

  it('window - past the quota deliveries queue, and past maxQueued the offer is full', () => {
    const w = new InflightWindow(2, 2);
    idOf(w.offer(tpl, off));
    idOf(w.offer(tpl, off));
    assert.equal(w.offer(tpl, off), 'queued');
    assert.equal(w.offer(tpl, off), 'queued');
    assert.equal(w.offer(tpl, off), 'full');
    assert.equal(w.queued, 2);
  });

  it('puback - frees the id and releases the next queued delivery with a fresh id', () => {
    const w = new InflightWindow(2, 10);
    idOf(w.offer(tpl, off));
    idOf(w.offer(tpl, off));
    w.offer(tpl, off);
    assert.equal(idOf(w.ack(1)), 3);
    assert.equal(w.inFlight, 2);
    assert.equal(w.queued, 0);
    assert.equal(w.ack(2), undefined, 'nothing queued');
    assert.equal(w.inFlight, 1);
  });

  it('puback - an unknown or repeated id changes nothing', () => {
    const w = new InflightWindow(1, 10);
    idOf(w.offer(tpl, off));
    w.offer(tpl, off);
    assert.equal(w.ack(7), undefined);
    assert.equal(w.inFlight, 1);
    assert.equal(w.queued, 1);
    idOf(w.ack(1));
    assert.equal(w.ack(1), undefined);
  });

  it('ids - wrap from 65535 to 1 and skip ids still in flight', () => {
    const w = new InflightWindow(65535, 0);
    const seen: number[] = [];
    for (let i = 0; i < 65535; i++) seen.push(idOf(w.offer(tpl, off)));
    assert.equal(seen[65534], 65535);
    assert.equal(w.offer(tpl, off), 'full', 'every id is in use and nothing may queue');
    w.ack(7);
    w.ack(3);
    assert.equal(idOf(w.offer(tpl, off)), 3, 'after 65535 the search wraps to 1 and takes the next free id');
    assert.equal(idOf(w.offer(tpl, off)), 7);
  });

  it('limitTo - lowers the quota to the Receive Maximum; 0 or undefined leaves it', () => {
    const w = new InflightWindow(5, 10);
    w.limitTo(undefined);
    w.limitTo(0);
    w.limitTo(9);
    w.limitTo(2);
    idOf(w.offer(tpl, off));
    idOf(w.offer(tpl, off));
    assert.equal(w.offer(tpl, off), 'queued');
  });

  it('clear - drops queued deliveries but keeps ids in flight', () => {
    const w = new InflightWindow(1, 10);
    idOf(w.offer(tpl, off));
    w.offer(tpl, off);
    w.clear();
    assert.equal(w.queued, 0);
    assert.equal(w.ack(1), undefined);
  });

  it('owned - an encoding owned by the connection gets its id in place (no copy); a shared one is copied and left as it was', () => {
    const w = new InflightWindow(1, 10);
    const shared = Buffer.from(tpl);
    const sent = w.offer(shared, off) as Buffer;
    assert.notEqual(sent, shared);
    assert.deepEqual(shared, tpl, 'the shared encoding is untouched');
    const mine = Buffer.from(tpl);
    assert.equal(w.offer(mine, off, true), 'queued');
    const next = w.ack(idOf(sent))!;
    assert.equal(next, mine, 'the same buffer, with its id written in');
    assert.equal(next.readUInt16BE(off), idOf(next));
    assert.notEqual(idOf(next), idOf(sent));
  });
});
