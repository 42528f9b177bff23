/** How a message's payload bytes are to be read: JSON text, or opaque bytes. */
export type ContentType = 'json' | 'bytes';

/** Options of a control subscription. */
export interface ControlOptions {
  /**
   * This node's own messages are dropped where the bus can tell them cheaply (the signed bus: by
   * the signature it made), before they are authenticated and decoded. Best effort: a handler
   * must still ignore its own (an unsigned bus delivers them all).
   */
  othersOnly?: boolean;
}

/** A message as it crosses nodes. `topic` is org-relative; `payload` is exactly the published bytes. */
export interface BusMessage {
  readonly org: string;
  readonly topic: string;
  readonly payload: Uint8Array;
  readonly contentType: ContentType;
  /** `sub` of the publishing principal, when known (absent for raw NATS publishers). */
  readonly from?: string;
  /** Publish time in ms since the epoch, stamped by the publishing hub (0 when unknown). */
  readonly ts: number;
  /**
   * The highest MQTT QoS the message may be delivered at: 0 for an MQTT publish at QoS 0 (MQTT
   * delivers at the minimum of the publish and the subscription QoS), else 1.
   */
  readonly qos: 0 | 1;
  /** Position in the topic's history stream, for topics of a namespace with history (docs/history.md). */
  readonly offset?: number;
  readonly epoch?: string;
  /** MQTT 5 Message Expiry: ms since the epoch after which the message is not delivered; 0 = never. */
  readonly expiresAt?: number;
}

export type BusHandler = (msg: BusMessage) => void;

export interface PublishMeta {
  contentType: ContentType;
  from?: string;
  /** 0 for an MQTT publish at QoS 0; absent means at least once (1). */
  qos?: 0 | 1;
  /** History position assigned before the publish (topics of a namespace with history). */
  offset?: number;
  epoch?: string;
  /** MQTT 5 Message Expiry as ms since the epoch; absent or 0 = never. */
  expiresAt?: number;
  /**
   * A recorded command, published by the command path (needs `from`): signed so that nodes tell it
   * from a raw publish on a command topic, which they drop (hub/bus/headerAuth.ts `Orghub-Cmd-Sig`).
   */
  command?: boolean;
}

/**
 * Cross-node fan-out. One underlying subscription per org with any local subscriber (the node
 * receives and parses each message once, however many local patterns overlap on it), matched
 * locally against the patterns. Patterns whose first segment is a wildcard never deliver `$`
 * system topics. Handlers of patterns that match the same message get the same BusMessage object.
 */
export interface Bus {
  /** Throws HubError('unavailable') while the bus is disconnected: never a silent drop. */
  publish(org: string, topic: string, payload: Uint8Array, meta: PublishMeta): void;
  /** Returns a disposer; the underlying subscription closes when the last handler is disposed. */
  subscribe(org: string, pattern: string, handler: BusHandler): () => void;
  /** Every message of the org, once, `$` topics included (for callers that match locally). */
  subscribeOrg(org: string, handler: BusHandler): () => void;
  readonly connected: boolean;
  /**
   * Node-to-node control messages of one `kind` (subject `orghub.ctl.<kind>`, outside every org's
   * `hub.<org>.` space, so no client topic can name them). Best effort: a node that is
   * disconnected misses them; throws HubError('unavailable') while the bus is down.
   */
  publishControl(kind: string, payload: Uint8Array): void;
  /** Every control message of `kind`, including this node's own unless `opts.othersOnly`. Returns a disposer. */
  subscribeControl(kind: string, handler: (payload: Uint8Array) => void, opts?: ControlOptions): () => void;
  /** Resolves once everything published so far has reached the server. */
  flush(): Promise<void>;
  close(): Promise<void>;
}
