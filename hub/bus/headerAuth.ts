import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';

/**
 * What a message's `Orghub-From` and `Orghub-Ts` headers may be trusted for. Any NATS client that
 * may publish on `hub.<org>.>` can set them, so the hub signs the pair it stamps
 * (HMAC-SHA-256 under ORGHUB_CLUSTER_SECRET over subject, from and ts, truncated to 128 bits, in
 * `Orghub-Sig`) and believes `from` only with a valid signature. A timestamp that is not a finite
 * number of ms near this node's clock is replaced by the receive time: a JSON frame carries it as a
 * bare number, and `Infinity` there would break the whole coalesced frame for every recipient.
 */
export const H_SIG = 'Orghub-Sig';
/**
 * On messages of a command topic only: HMAC-SHA-256 under the same secret over subject, ts, from
 * and the payload bytes (full 256 bits, base64url). `Orghub-Sig` does not cover the payload, so a
 * NATS client that saw one genuine command could reuse its headers on forged bytes; this one
 * cannot be moved to other bytes, another subject or (past COMMAND_MAX_SKEW_MS) another time.
 */
export const H_CMD_SIG = 'Orghub-Cmd-Sig';
/** How far a command message's `Orghub-Ts` may be from the receiving node's clock (as control messages). */
export const COMMAND_MAX_SKEW_MS = 60_000;
/** Timestamps further than this from the receiving node's clock are "absurd" and replaced. */
export const MAX_TS_SKEW_MS = 24 * 3600_000;
const SIG_BYTES = 16;

export interface HeaderAuth {
  sign(subject: string, from: string, ts: string): string;
  /** `from` if signed (else undefined) and a sane `ts` (0 when absent, receive time when absurd). */
  check(subject: string, from: string | undefined, ts: string | undefined, sig: string | undefined, nowMs?: number): { from?: string; ts: number };
  /** The `Orghub-Cmd-Sig` of a command message. */
  signCommand(subject: string, from: string, ts: string, payload: Uint8Array): string;
  /** True only for a command message this cluster's hubs published: valid signature over these bytes, fresh `ts`. */
  checkCommand(subject: string, from: string | undefined, ts: string | undefined, payload: Uint8Array, sig: string | undefined, nowMs?: number): boolean;
}

export function saneTs(raw: string | undefined, nowMs: number): number {
  if (raw === undefined || raw === '') return 0;
  const ts = Number(raw);
  if (!Number.isSafeInteger(ts) || Math.abs(ts - nowMs) > MAX_TS_SKEW_MS) return nowMs;
  return ts;
}

export function createHeaderAuth(secret: string): HeaderAuth {
  const key: KeyObject = createSecretKey(Buffer.from(secret, 'utf8'));
  const mac = (subject: string, from: string, ts: string) => createHmac('sha256', key).update(`${subject}\n${from}\n${ts}`).digest().subarray(0, SIG_BYTES);
  const cmdMac = (subject: string, from: string, ts: string, payload: Uint8Array) => createHmac('sha256', key).update(`cmd\n${subject}\n${ts}\n${from.length}:${from}`).update(payload).digest();
  return {
    sign: (subject, from, ts) => mac(subject, from, ts).toString('base64url'),
    signCommand: (subject, from, ts, payload) => cmdMac(subject, from, ts, payload).toString('base64url'),
    checkCommand(subject, from, ts, payload, sig, nowMs = Date.now()) {
      if (from === undefined || ts === undefined || sig === undefined || sig.length !== 43) return false;
      const t = Number(ts);
      if (!Number.isSafeInteger(t) || Math.abs(t - nowMs) > COMMAND_MAX_SKEW_MS) return false;
      const given = Buffer.from(sig, 'base64url');
      return given.length === 32 && timingSafeEqual(given, cmdMac(subject, from, ts, payload));
    },
    check(subject, from, ts, sig, nowMs = Date.now()) {
      const t = saneTs(ts, nowMs);
      if (from === undefined) return { ts: t };
      if (sig === undefined || sig.length !== 22) return { ts: t };
      const given = Buffer.from(sig, 'base64url');
      if (given.length !== SIG_BYTES || !timingSafeEqual(given, mac(subject, from, ts ?? ''))) return { ts: t };
      return { from, ts: t };
    },
  };
}
