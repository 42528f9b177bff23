import { Ajv, type ValidateFunction } from 'ajv';
import { Packr } from 'msgpackr';
import { HubError } from '../errors.ts';

/** The two WebSocket subprotocols. Both carry the same frame objects. */
export const SUBPROTOCOL_JSON = 'orghub.v1.json';
export const SUBPROTOCOL_MSGPACK = 'orghub.v1.msgpack';
export type Encoding = 'json' | 'msgpack';

export type ClientFrame =
  | { op: 'sub'; id?: number | string; topic: string; since?: { offset: number; epoch: string } }
  | { op: 'unsub'; id?: number | string; topic: string }
  | { op: 'pub'; id?: number | string; topic: string; data: unknown }
  | { op: 'cmd'; id?: number | string; type: string; topic: string; data: unknown; key?: string }
  | { op: 'auth'; id?: number | string; token: string }
  | { op: 'ping'; id?: number | string };

const id = { anyOf: [{ type: 'integer' }, { type: 'string', maxLength: 64 }] };
const topic = { type: 'string', minLength: 1, maxLength: 512 };
const frameSchemas: Record<ClientFrame['op'], object> = {
  sub: {
    type: 'object',
    required: ['topic'],
    properties: {
      op: {},
      id,
      topic,
      since: { type: 'object', required: ['offset', 'epoch'], properties: { offset: { type: 'integer', minimum: 0 }, epoch: { type: 'string', minLength: 1, maxLength: 64 } }, additionalProperties: false },
    },
    additionalProperties: false,
  },
  unsub: { type: 'object', required: ['topic'], properties: { op: {}, id, topic }, additionalProperties: false },
  pub: { type: 'object', required: ['topic', 'data'], properties: { op: {}, id, topic, data: {} }, additionalProperties: false },
  cmd: {
    type: 'object',
    required: ['type', 'topic', 'data'],
    properties: { op: {}, id, topic, type: { type: 'string', minLength: 1, maxLength: 128 }, data: {}, key: { type: 'string', minLength: 1, maxLength: 200 } },
    additionalProperties: false,
  },
  auth: { type: 'object', required: ['token'], properties: { op: {}, id, token: { type: 'string', minLength: 1 } }, additionalProperties: false },
  ping: { type: 'object', properties: { op: {}, id }, additionalProperties: false },
};

const ajv = new Ajv({ allErrors: false });
const validators = new Map<string, ValidateFunction>(Object.entries(frameSchemas).map(([op, s]) => [op, ajv.compile(s)]));

const packr = new Packr({ useRecords: false, mapsAsObjects: true });
const textDecoder = new TextDecoder('utf-8', { fatal: true });

/** The request id of a frame, if it has a usable one; used to correlate `err` even for invalid frames. */
function requestId(obj: unknown): number | string | undefined {
  if (obj === null || typeof obj !== 'object') return undefined;
  const v = (obj as { id?: unknown }).id;
  return typeof v === 'number' && Number.isSafeInteger(v) ? v : typeof v === 'string' && v.length <= 64 ? v : undefined;
}

/** A frame that could not be accepted, with the id to answer (when the frame had one). */
export class FrameError extends HubError {
  constructor(code: HubError['code'], message: string, readonly requestId?: number | string) {
    super(code, message);
  }
}

/**
 * Decodes and validates one inbound frame. Throws FrameError with code `bad_frame`
 * (undecodable, or the wrong WebSocket frame type for the subprotocol), `unknown_op` or `invalid`.
 */
export function decodeFrame(buf: ArrayBuffer, isBinary: boolean, enc: Encoding): ClientFrame {
  let obj: unknown;
  if (enc === 'json') {
    if (isBinary) throw new FrameError('bad_frame', 'binary frame on the JSON subprotocol');
    try {
      obj = JSON.parse(textDecoder.decode(buf));
    } catch {
      throw new FrameError('bad_frame', 'frame is not valid UTF-8 JSON');
    }
  } else {
    if (!isBinary) throw new FrameError('bad_frame', 'text frame on the msgpack subprotocol');
    try {
      obj = packr.unpack(new Uint8Array(buf));
    } catch {
      throw new FrameError('bad_frame', 'frame is not valid msgpack');
    }
  }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new FrameError('bad_frame', 'frame must be an object');
  }
  const op = (obj as { op?: unknown }).op;
  const rid = requestId(obj);
  if (typeof op !== 'string') throw new FrameError('invalid', 'frame has no "op"', rid);
  const validate = validators.get(op);
  if (!validate) throw new FrameError('unknown_op', `unknown op "${op.slice(0, 32)}"`, rid);
  if (!validate(obj)) {
    const e = validate.errors?.[0];
    throw new FrameError('invalid', `${op}: ${e?.instancePath || 'frame'} ${e?.message ?? 'is invalid'}`, rid);
  }
  return obj as ClientFrame;
}

/** Encodes one server frame (or an array of them) for the connection's subprotocol. */
export function encodeFrame(frame: object, enc: Encoding): string | Uint8Array {
  return enc === 'json' ? JSON.stringify(frame) : packr.pack(frame);
}

export function encodeMsgpack(value: unknown): Uint8Array {
  return packr.pack(value);
}

export function decodeMsgpack(buf: Uint8Array): unknown {
  return packr.unpack(buf);
}
