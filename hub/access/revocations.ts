import type { Principal, TokenVerifier } from '../auth/principal.ts';
import type { Bus } from '../bus/bus.ts';
import type { SessionRegistry } from '../core/sessions.ts';
import { AuthError, HubError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { parseRule, RevocationList, type RevocationRule } from './revocation.ts';
import { ORG_FULL, type RevocationStore } from './revocationStore.ts';

/** Control kind (subject `orghub.ctl.access.revoked`) on which every new rule is announced. */
export const REVOCATION_CONTROL = 'access.revoked';

export interface RevocationsOptions {
  store: RevocationStore;
  bus: Bus;
  sessions: SessionRegistry;
  log: Logger;
  /** Live rules per org (ORGHUB_REVOCATIONS_MAX). */
  maxPerOrg: number;
  /** Full reload from the store, as a backstop for a missed announcement (ms). */
  resyncMs?: number;
}

export interface Revocations {
  /** Resolves once the first load from the store finished (tokens are refused until then). */
  readonly ready: Promise<void>;
  /** Whether a token may be accepted now: throws `token_revoked`, or `unavailable` while the store is down. */
  checkNew(p: Principal): void;
  /** Stores, applies locally and announces a rule; resolves with whether other nodes were told. */
  revoke(r: RevocationRule): Promise<{ announced: boolean }>;
  /** Ends every live session on this node that `r` matches; returns how many. */
  apply(r: RevocationRule): number;
  readonly size: number;
  close(): void;
}

/**
 * The revocation list of one node. Checks are local (the in-memory RevocationList); the store
 * makes rules survive restarts, the control subject makes them reach every node at once:
 *   POST → store.add → apply here → announce → every other node applies.
 * While the store is down, new tokens are refused (fail closed: this node cannot know of
 * revocations made meanwhile), but the rules it holds keep applying and announcements still close
 * sessions.
 */
export function createRevocations(opts: RevocationsOptions): Revocations {
  const { store, bus, sessions, log, maxPerOrg } = opts;
  const list = new RevocationList();
  let loaded = false;

  const apply = (r: RevocationRule): number => {
    list.add(r);
    let ended = 0;
    for (const s of sessions.inOrg(r.org)) {
      if (list.isRevoked(s.principal, s.session)) {
        s.end('revoked', 'token revoked');
        ended++;
      }
    }
    return ended;
  };

  const stopControl = bus.subscribeControl(REVOCATION_CONTROL, (payload) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.from(payload).toString('utf8'));
    } catch {
      return;
    }
    const r = parseRule(parsed);
    if (r) apply(r);
  });

  // A session that registers after its token passed checkNew but before a rule arrived.
  const stopAdd = sessions.onAdd((s) => {
    if (list.isRevoked(s.principal, s.session)) s.end('revoked', 'token revoked');
  });

  const reload = async () => {
    const rules = await store.loadAll();
    for (const r of rules) apply(r);
    list.prune();
    loaded = true;
  };
  let reloading: Promise<void> | undefined;
  const reloadSoon = () => {
    reloading ??= reload()
      .catch((err: unknown) => log.warn({ err: (err as Error).message }, 'revocations not reloaded from the store; retrying'))
      .finally(() => (reloading = undefined));
    return reloading;
  };
  store.onUp(() => void reloadSoon());
  const ready = (async () => {
    while (!loaded) {
      if (store.up) await reloadSoon();
      if (!loaded) await new Promise((r) => setTimeout(r, 200));
    }
  })();
  const timer = setInterval(() => {
    if (store.up) void reloadSoon();
  }, opts.resyncMs ?? 30_000);
  timer.unref();

  return {
    ready,
    checkNew(p) {
      if (list.isRevoked(p)) throw new AuthError('token_revoked');
      if (!loaded || !store.up) throw new HubError('unavailable', 'revocation_list_unavailable');
    },
    async revoke(r) {
      let stored;
      try {
        stored = await store.add(r, maxPerOrg);
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'revocation not stored');
        throw new HubError('unavailable', 'revocation store unavailable; nothing was revoked');
      }
      if (stored === ORG_FULL) throw new HubError('limit', `at most ${maxPerOrg} revocations in force per org (ORGHUB_REVOCATIONS_MAX)`);
      apply(r);
      try {
        bus.publishControl(REVOCATION_CONTROL, Buffer.from(JSON.stringify(r)));
        return { announced: true };
      } catch {
        // Stored: the other nodes pick it up at their next resync (30 s) or reconnect.
        log.warn({ org: r.org, kind: r.kind }, 'revocation stored but not announced (NATS down); other nodes apply it at their next resync');
        return { announced: false };
      }
    },
    apply,
    get size() {
      return list.size;
    },
    close() {
      clearInterval(timer);
      stopControl();
      stopAdd();
    },
  };
}

/**
 * Checks every verified token against the revocation list: one wrapper, so the WebSocket
 * upgrade, in-band refresh, MQTT CONNECT and every HTTP request all refuse a revoked token.
 */
export function withRevocationCheck(inner: TokenVerifier, revocations: Pick<Revocations, 'checkNew'>): TokenVerifier {
  return {
    async verify(token) {
      const p = await inner.verify(token);
      revocations.checkNew(p);
      return p;
    },
    close: () => inner.close?.(),
  };
}
