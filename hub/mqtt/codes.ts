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
  receiveMaximumExceeded: 0x93,
  topicAliasInvalid: 0x94,
  packetTooLarge: 0x95,
  messageRateTooHigh: 0x96,
  quotaExceeded: 0x97,
  payloadFormatInvalid: 0x99,
  sharedSubscriptionsNotSupported: 0x9e,
  maximumConnectTime: 0xa0,
} as const;

/** SUBACK failure in MQTT 3.1.1 (every refusal has this one code). */
export const SUBACK_FAILURE_V4 = 0x80;

/** Topic prefix that turns an MQTT PUBLISH into a recorded command (see docs/mqtt.md). */
export const COMMAND_PREFIX = '$cmd/';

/** MQTT 5 shared-subscription prefix; refused by this bridge. */
export const SHARE_PREFIX = '$share/';
