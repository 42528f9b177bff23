import { connect, headers, type NatsConnection, type Subscription, type Msg } from '@nats-io/transport-node';
import { HubError } from '../errors.ts';
import { patternToSubject, subjectToTopic, topicToSubject } from '../acl/topic.ts';
import type { Logger } from '../log.ts';
import type { Bus, BusHandler, BusMessage, PublishMeta } from './bus.ts';
import { detectContentType } from './contentType.ts';
import { PatternIndex } from './patternIndex.ts';
import { H_CMD_SIG, H_SIG, saneTs, type HeaderAuth } from './headerAuth.ts';

/** NATS header names carrying message metadata; the payload itself is never wrapped. */
export const H_CONTENT_TYPE = 'Orghub-Content-Type';
export const H_FROM = 'Orghub-From';
export const H_TS = 'Orghub-Ts';
/** Present (value `0`) only on MQTT QoS 0 publishes: MQTT subscribers then get them at QoS 0. */
export const H_QOS = 'Orghub-Qos';
/** History position of the message (topics of a namespace with history). */
export const H_OFFSET = 'Orghub-Offset';
export const H_EPOCH = 'Orghub-Epoch';
/** MQTT 5 Message Expiry of the message, ms since the epoch (absent = never). */
export const H_EXPIRES = 'Orghub-Expires';

/** The handlers of one (org, pattern). */
interface PatternEntry {
  /** An array: almost every entry has exactly one handler (memory per distinct pattern). */
  handlers: BusHandler[];
}

/**
 * Everything this node receives for one org: ONE NATS subscription (`hub.<org>.>`), however many
 * patterns its clients hold, matched locally. A message is received and parsed once per node, not
 * once per overlapping pattern (issue 9, "no amplification"). The price: a node receives all of an
 * org's traffic as soon as one local client subscribes to anything in it.
 */
interface Entry {
  readonly org: string;
  readonly subject: string;
  readonly patterns: Map<string, PatternEntry>;
  readonly index: PatternIndex<PatternEntry>;
  /** subscribeOrg handlers: every message of the org. */
  all: BusHandler[];
  sub?: Subscription;
}

export interface NatsBusOptions {
  servers: string;
  name: string;
  log: Logger;
  /** Signs `Orghub-From`/`Orghub-Ts` on publish and believes `from` only when signed (hub/bus/headerAuth.ts). */
  headerAuth?: HeaderAuth;
  /**
   * Topics only the hub's command path publishes on (the declared command topics, docs/access.md).
   * A message there is delivered only with a valid `Orghub-Cmd-Sig`; anything else (a raw NATS
   * publisher imitating a recorded command) is dropped and counted. Requires `headerAuth`.
   */
  commandTopics?: (topic: string) => boolean;
}

/** What the NATS bus counts beyond the Bus interface. */
export interface NatsBusStats {
  /** Messages on a command topic without a valid hub signature, dropped before any handler. */
  readonly forgedCommands: number;
}

/**
 * The Bus over core NATS. Connects in the background and keeps retrying forever; while
 * disconnected, `publish` throws `unavailable` (nats.js would otherwise buffer silently) and
 * nats.js re-establishes every subscription after a reconnect.
 */
/** Subject of node-to-node control messages of one kind. */
export function controlSubject(kind: string): string {
  if (!/^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)*$/.test(kind)) throw new Error(`invalid control kind ${JSON.stringify(kind)}`);
  return `orghub.ctl.${kind}`;
}

interface ControlEntry {
  readonly subject: string;
  readonly handler: (payload: Uint8Array) => void;
  sub?: Subscription;
}

export function createNatsBus(opts: NatsBusOptions): Bus & NatsBusStats & { ready: Promise<void> } {
  if (opts.commandTopics && !opts.headerAuth) throw new Error('createNatsBus: commandTopics needs headerAuth (command messages are recognised by their signature)');
  const isCommandTopic = opts.commandTopics;
  let forgedCommands = 0;
  let lastForgedLog = 0;
  const entries = new Map<string, Entry>();
  const controls = new Set<ControlEntry>();
  let nc: NatsConnection | undefined;
  let connected = false;
  let closing = false;

  const attach = (e: Entry) => {
    if (!nc || e.sub) return;
    e.sub = nc.subscribe(e.subject, { callback: (err, msg) => (err ? opts.log.warn({ err: err.message, subject: e.subject }, 'nats subscription error') : deliver(e, msg)) });
  };

  const attachControl = (c: ControlEntry) => {
    if (!nc || c.sub) return;
    c.sub = nc.subscribe(c.subject, {
      callback: (err, msg) => {
        if (err) return opts.log.warn({ err: err.message, subject: c.subject }, 'nats control subscription error');
        try {
          c.handler(msg.data);
        } catch (e) {
          opts.log.error({ err: e, subject: c.subject }, 'control handler failed');
        }
      },
    });
  };

  const deliver = (e: Entry, msg: Msg) => {
    const parsed = subjectToTopic(msg.subject);
    if (!parsed || parsed.org !== e.org) return; // junk subject from a raw publisher
    // One pass over the headers: MsgHdrs.get() allocates key lists on every call. One NATS
    // subscription per org, so a message is parsed (and its signature checked) once however many
    // patterns match it.
    let claimed: string | undefined;
    let from: string | undefined;
    let tsRaw: string | undefined;
    let sig: string | undefined;
    let cmdSig: string | undefined;
    let qos: 0 | 1 = 1;
    let offset: number | undefined;
    let epoch: string | undefined;
    let expiresAt = 0;
    const h = msg.headers;
    if (h) {
      for (const [k, v] of h) {
        if (k === H_CONTENT_TYPE) claimed = v[0];
        else if (k === H_FROM) from = v[0] || undefined;
        else if (k === H_TS) tsRaw = v[0];
        else if (k === H_SIG) sig = v[0];
        else if (k === H_CMD_SIG) cmdSig = v[0];
        else if (k === H_QOS && v[0] === '0') qos = 0;
        else if (k === H_OFFSET) offset = Number(v[0]) || undefined;
        else if (k === H_EPOCH) epoch = v[0] || undefined;
        else if (k === H_EXPIRES) expiresAt = Number(v[0]) || 0;
      }
    }
    // Only the command path publishes on a command topic: an unsigned (or mis-signed, moved,
    // stale) message there would look exactly like a recorded command, so nobody gets it.
    if (isCommandTopic?.(parsed.topic) && !opts.headerAuth!.checkCommand(msg.subject, from, tsRaw, msg.data, cmdSig)) return dropForged(parsed.org, parsed.topic);
    const meta = opts.headerAuth ? opts.headerAuth.check(msg.subject, from, tsRaw, sig) : { from, ts: saneTs(tsRaw, Date.now()) };
    const out: BusMessage = { org: parsed.org, topic: parsed.topic, payload: msg.data, contentType: claimed === 'bytes' ? 'bytes' : detectContentType(msg.data), from: meta.from, ts: meta.ts, qos, offset, epoch, expiresAt };
    for (let i = 0; i < e.all.length; i++) call(e.all[i], out);
    // The `$` rule (a pattern starting with a wildcard never matches a system topic) is the index's.
    if (e.patterns.size > 0) e.index.match(parsed.topic, (pe) => pe.handlers.forEach((h) => call(h, out)));
  };

  const dropForged = (org: string, topic: string) => {
    forgedCommands++;
    const now = Date.now();
    if (now - lastForgedLog < 5000) return;
    lastForgedLog = now;
    opts.log.warn({ org, topic, forgedCommands }, 'message on a command topic without a valid hub signature dropped (a raw NATS publish, or ORGHUB_CLUSTER_SECRET differs between nodes)');
  };

  const call = (handler: BusHandler, m: BusMessage) => {
    try {
      handler(m);
    } catch (err) {
      opts.log.error({ err }, 'bus handler failed');
    }
  };

  const orgEntry = (org: string): Entry => {
    let e = entries.get(org);
    if (!e) {
      e = { org, subject: patternToSubject(org, '#'), patterns: new Map(), index: new PatternIndex(), all: [] };
      entries.set(org, e);
      attach(e);
    }
    return e;
  };
  const maybeDrop = (e: Entry) => {
    if (e.patterns.size > 0 || e.all.length > 0 || entries.get(e.org) !== e) return;
    entries.delete(e.org);
    e.sub?.unsubscribe();
  };

  const ready = (async () => {
    const servers = opts.servers.split(',').map((s) => s.trim()).filter(Boolean);
    for (let attempt = 0; !closing; attempt++) {
      try {
        nc = await connect({ servers, name: opts.name, reconnect: true, maxReconnectAttempts: -1, reconnectTimeWait: 250, pingInterval: 5000, maxPingOut: 2 });
        break;
      } catch (err) {
        if (attempt === 0 || attempt % 20 === 0) opts.log.warn({ err: (err as Error).message }, 'NATS not reachable yet; retrying');
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    if (!nc) return;
    connected = true;
    opts.log.info({ server: nc.getServer() }, 'connected to NATS');
    for (const e of entries.values()) attach(e);
    for (const c of controls) attachControl(c);
    void (async () => {
      for await (const s of nc!.status()) {
        if (s.type === 'disconnect') {
          connected = false;
          opts.log.warn('NATS disconnected; publishes are refused with "unavailable" until it returns');
        } else if (s.type === 'reconnect') {
          connected = true;
          opts.log.info('NATS reconnected');
        }
      }
    })();
  })();

  return {
    ready,
    get connected() {
      return connected && !closing;
    },
    get forgedCommands() {
      return forgedCommands;
    },
    publish(org: string, topic: string, payload: Uint8Array, meta: PublishMeta) {
      if (!nc || !connected || closing) throw new HubError('unavailable', 'message bus unavailable; nothing was published');
      const h = headers();
      const subject = topicToSubject(org, topic);
      const ts = String(Date.now());
      h.set(H_CONTENT_TYPE, meta.contentType);
      h.set(H_TS, ts);
      if (meta.from) {
        h.set(H_FROM, meta.from);
        if (opts.headerAuth) h.set(H_SIG, opts.headerAuth.sign(subject, meta.from, ts));
        if (meta.command && opts.headerAuth) h.set(H_CMD_SIG, opts.headerAuth.signCommand(subject, meta.from, ts, payload));
      }
      if (meta.qos === 0) h.set(H_QOS, '0');
      if (meta.offset !== undefined && meta.epoch !== undefined) {
        h.set(H_OFFSET, String(meta.offset));
        h.set(H_EPOCH, meta.epoch);
      }
      if (meta.expiresAt) h.set(H_EXPIRES, String(meta.expiresAt));
      nc.publish(subject, payload, { headers: h });
    },
    subscribe(org: string, pattern: string, handler: BusHandler) {
      patternToSubject(org, pattern); // validates org and pattern (throws bad_topic)
      const e = orgEntry(org);
      let pe = e.patterns.get(pattern);
      if (!pe) {
        pe = { handlers: [] };
        e.patterns.set(pattern, pe);
        e.index.add(pattern, pe);
      }
      pe.handlers.push(handler);
      const entry = pe;
      return () => {
        const i = entry.handlers.indexOf(handler);
        if (i < 0) return;
        entry.handlers.splice(i, 1);
        if (entry.handlers.length > 0) return;
        e.patterns.delete(pattern);
        e.index.remove(pattern, entry);
        maybeDrop(e);
      };
    },
    subscribeOrg(org: string, handler: BusHandler) {
      const e = orgEntry(org);
      e.all.push(handler);
      return () => {
        const i = e.all.indexOf(handler);
        if (i < 0) return;
        e.all.splice(i, 1);
        maybeDrop(e);
      };
    },
    publishControl(kind: string, payload: Uint8Array) {
      const subject = controlSubject(kind);
      if (!nc || !connected || closing) throw new HubError('unavailable', 'message bus unavailable; control message not sent');
      nc.publish(subject, payload);
    },
    // `othersOnly` is not honoured here: an unsigned control message does not tell who sent it.
    subscribeControl(kind: string, handler: (payload: Uint8Array) => void) {
      const c: ControlEntry = { subject: controlSubject(kind), handler };
      controls.add(c);
      attachControl(c);
      return () => {
        if (!controls.delete(c)) return;
        c.sub?.unsubscribe();
      };
    },
    async flush() {
      if (nc && connected) await nc.flush();
    },
    async close() {
      closing = true;
      if (nc) await nc.drain().catch(() => nc?.close());
    },
  };
}
