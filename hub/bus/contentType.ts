import type { ContentType } from './bus.ts';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * `json` when the bytes are complete UTF-8 JSON text, else `bytes`. The payload itself is never
 * changed: this only tells WebSocket clients whether to show it as `data` or base64. Used on the
 * way in (MQTT) and on receipt from NATS, where hub frames embed JSON text verbatim, so invalid
 * JSON must never pass as JSON whatever a header claims.
 */
export function detectContentType(payload: Uint8Array): ContentType {
  if (payload.length === 0) return 'bytes';
  // Cheap pre-check: JSON text starts with one of `{ [ " - 0-9 t f n` or whitespace.
  const c = payload[0];
  if (!(c === 0x7b || c === 0x5b || c === 0x22 || c === 0x2d || (c >= 0x30 && c <= 0x39) || c === 0x74 || c === 0x66 || c === 0x6e || c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09)) return 'bytes';
  try {
    JSON.parse(utf8.decode(payload));
    return 'json';
  } catch {
    return 'bytes';
  }
}
