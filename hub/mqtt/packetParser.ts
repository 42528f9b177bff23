import { createRequire } from 'node:module';
import type { Parser } from 'mqtt-packet';
import type { Version } from './outbound.ts';

const require = createRequire(import.meta.url);
// mqtt-packet's own classes (CommonJS, no "exports" map): its Parser, the Packet it starts each
// packet with, and bl's plain BufferList.
const MqttParser = require('mqtt-packet/parser.js') as new () => Parser & { parser(opts: { protocolVersion: Version }): Parser };
const Packet = require('mqtt-packet/packet.js') as new () => unknown;
const { BufferList } = require('bl') as { BufferList: new () => unknown };

/**
 * mqtt-packet's parser with its byte buffer as a plain `BufferList` instead of bl's
 * `BufferListStream`, a Duplex stream the parser never uses as one (it calls append, consume,
 * length, readUInt*, slice and toString, all BufferList's own). Building that stream was most of a
 * new connection's parser cost: 20-50 µs against about 3 µs (issue 12, docs/benchmarks.md).
 * Parsing is mqtt-packet's, unchanged; `packetParser.test.ts` holds it to the stock parser.
 */
class LeanParser extends MqttParser {
  /** mqtt-packet's `_resetState` (run at construction and after an error), with a plain BufferList. */
  _resetState(): void {
    const self = this as unknown as { packet: unknown; error: unknown; _list: unknown; _stateCounter: number };
    self.packet = new Packet();
    self.error = null;
    self._list = new BufferList();
    self._stateCounter = 0;
  }
}

/** A parser for one connection's byte stream (protocol version 4 until a CONNECT says otherwise). */
export function createPacketParser(version: Version): Parser {
  return new LeanParser().parser({ protocolVersion: version });
}
