/**
 * MQTT return and reason codes used by the bridge (MQTT 3.1.1 §3.2.2.3, §3.9.3; MQTT 5 §2.4).
 * Named here once so that sessions, tests and docs/mqtt.md speak the same numbers.
 */

/** MQTT 3.1.1 CONNACK return codes. */
export const ConnackV4 = {
  accepted: 0,
  identifierRejected: 2,
  serverUnavailable: 3,
  badUserNameOrPassword: 4,
  notAuthorized: 5,
} as const;

/** MQTT 5 reason codes (the subset the bridge sends). */
export const Reason = {
  success: 0x00,
  grantedQos1: 0x01,
  disconnectWithWill: 0x04,
  noSubscriptionExisted: 0x11,
  unspecified: 0x80,
  malformedPacket: 0x81,
  protocolError: 0x82,
  implementationSpecific: 0x83,
  clientIdentifierNotValid: 0x85,
  badUserNameOrPassword: 0x86,
  notAuthorized: 0x87,
  serverUnavailable: 0x88,
  serverShuttingDown: 0x8b,
  badAuthenticationMethod: 0x8c,
  keepAliveTimeout: 0x8d,
  sessionTakenOver: 0x8e,
  topicFilterInvalid: 0x8f,
  topicNameInvalid: 0x90,
  packetIdentifierNotFound: 0x92,
  receiveMaximumExceeded: 0x93,
  topicAliasInvalid: 0x94,
  packetTooLarge: 0x95,
  messageRateTooHigh: 0x96,
  quotaExceeded: 0x97,
  payloadFormatInvalid: 0x99,
  sharedSubscriptionsNotSupported: 0x9e,
  administrativeAction: 0x98,
  maximumConnectTime: 0xa0,
} as const;

/** SUBACK failure in MQTT 3.1.1 (every refusal has this one code). */
export const SUBACK_FAILURE_V4 = 0x80;

/** Topic prefix that turns an MQTT PUBLISH into a recorded command (see docs/mqtt.md). */
export const COMMAND_PREFIX = '$cmd/';

/** MQTT 5 shared-subscription prefix; refused by this bridge. */
export const SHARE_PREFIX = '$share/';

/** Why a CONNECT is refused (the audit `reason` of `session.rejected`, except `token_invalid`, which audits the verifier's reason). */
export type ConnectRefusal =
  | 'auth_method_unsupported'
  | 'client_id_required'
  | 'token_missing'
  | 'token_invalid'
  | 'will_topic_invalid'
  | 'will_not_granted'
  | 'session_store_unavailable'
  | 'session_quota'
  | 'connection_limit'
  | 'unavailable';

/** CONNACK code per refusal: `v4` for MQTT 3.1.1 (return code), `v5` for MQTT 5 (reason code). docs/mqtt.md "Authentication". */
export const CONNECT_REFUSALS: Readonly<Record<ConnectRefusal, { readonly v4: number; readonly v5: number }>> = {
  // 3.1.1 has no code for an unsupported auth method; it is unreachable there (no AUTH properties).
  auth_method_unsupported: { v4: ConnackV4.notAuthorized, v5: Reason.badAuthenticationMethod },
  // MQTT 5 assigns an id instead, so `v5` is only a fallback.
  client_id_required: { v4: ConnackV4.identifierRejected, v5: Reason.clientIdentifierNotValid },
  token_missing: { v4: ConnackV4.badUserNameOrPassword, v5: Reason.badUserNameOrPassword },
  token_invalid: { v4: ConnackV4.notAuthorized, v5: Reason.notAuthorized },
  will_topic_invalid: { v4: ConnackV4.notAuthorized, v5: Reason.topicNameInvalid },
  will_not_granted: { v4: ConnackV4.notAuthorized, v5: Reason.notAuthorized },
  // A persistent session was asked for and Redis, which holds it, did not answer: nothing was resumed.
  session_store_unavailable: { v4: ConnackV4.serverUnavailable, v5: Reason.serverUnavailable },
  // The org holds ORGHUB_MQTT_MAX_SESSIONS persistent sessions; 3.1.1 has no quota code.
  session_quota: { v4: ConnackV4.serverUnavailable, v5: Reason.quotaExceeded },
  // A connection cap (per IP, org or user; hub/limits): 3.1.1 can only say "server unavailable".
  connection_limit: { v4: ConnackV4.serverUnavailable, v5: Reason.quotaExceeded },
  // The revocation list cannot be read (Redis down): new tokens are refused (fail closed), retry later.
  unavailable: { v4: ConnackV4.serverUnavailable, v5: Reason.serverUnavailable },
};

/** Why one SUBSCRIBE filter is refused (the other filters of the packet are unaffected). */
export type FilterRefusal = 'shared' | 'invalid' | 'denied' | 'quota';

const SUBACK_REFUSALS_V5: Readonly<Record<FilterRefusal, number>> = {
  shared: Reason.sharedSubscriptionsNotSupported,
  invalid: Reason.topicFilterInvalid,
  denied: Reason.notAuthorized,
  quota: Reason.quotaExceeded,
};

/** SUBACK code of a refused filter: the specific MQTT 5 reason, or 0x80 for every case in 3.1.1. */
export function subackRefusal(r: FilterRefusal, version: 4 | 5): number {
  return version === 5 ? SUBACK_REFUSALS_V5[r] : SUBACK_FAILURE_V4;
}

/** True for an MQTT 5 shared-subscription filter (`$share/<group>/<filter>`), which the bridge refuses. */
export function isSharedFilter(filter: string): boolean {
  return filter.startsWith(SHARE_PREFIX);
}
