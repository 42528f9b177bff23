import type { Principal, TokenVerifier } from '../auth/principal.ts';
import type { Bus } from '../bus/bus.ts';
import type { SessionRegistry } from '../core/sessions.ts';
import { AuthError, HubError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { isOrgId, type OrgRecord } from './org.ts';
import type { OrgStore } from './orgStore.ts';

/** Control kind (subject `orghub.ctl.access.org`): an org's status changed. */
export const ORG_CONTROL = 'access.org';

export interface OrgDirectory {
  readonly ready: Promise<void>;
  /** Throws `org_suspended`, `org_unknown` (explicit provisioning), or `unavailable` before the first load. */
  checkNew(p: Principal): void;
  /** Stores `r`, applies it here (closing the org's sessions when suspended) and tells every node. */
  publish(r: OrgRecord): Promise<void>;
  /** Calls `listener` with the org whenever its record changed, here or on another node (e.g. to re-read its limits). */
  onChange(listener: (org: string) => void): void;
  close(): void;
}

/**
 * Every node's copy of the org directory: which orgs exist and which are suspended. Loaded at start,
 * resynced every 30 s and on Redis reconnect, and kept current by `orghub.ctl.access.org`. A
 * suspension ends every session of the org on every node (WebSocket 4202, MQTT 5 0x98) and refuses
 * its new connections with `org_suspended`.
 */
export function createOrgDirectory(opts: { store: OrgStore; bus: Bus; sessions: SessionRegistry; log: Logger; provisioning: 'auto' | 'explicit'; resyncMs?: number }): OrgDirectory {
  const { store, bus, sessions, log } = opts;
  const status = new Map<string, OrgRecord['status']>();
  let loaded = false;
  const listeners: ((org: string) => void)[] = [];
  const changed = (org: string) => {
    for (const l of listeners) l(org);
  };

  const apply = (org: string, s: OrgRecord['status']) => {
    status.set(org, s);
    if (s !== 'suspended') return;
    for (const live of sessions.inOrg(org)) live.end('suspended', 'org suspended');
  };
  const stopControl = bus.subscribeControl(ORG_CONTROL, (payload) => {
    try {
      const m = JSON.parse(Buffer.from(payload).toString('utf8')) as { org?: unknown; status?: unknown };
      if (isOrgId(m.org) && (m.status === 'active' || m.status === 'suspended')) {
        apply(m.org, m.status);
        changed(m.org);
      }
    } catch {
      /* malformed: ignored (and it was signed by a node, so it cannot be a forgery) */
    }
  });
  const stopAdd = sessions.onAdd((s) => {
    if (status.get(s.principal.org) === 'suspended') s.end('suspended', 'org suspended');
  });
  const reload = async () => {
    for (const r of await store.all()) apply(r.org, r.status);
    loaded = true;
  };
  let reloading: Promise<void> | undefined;
  const reloadSoon = () =>
    (reloading ??= reload()
      .catch((err: unknown) => log.warn({ err: (err as Error).message }, 'org directory not reloaded; retrying'))
      .finally(() => (reloading = undefined)));
  store.onUp(() => void reloadSoon());
  const ready = (async () => {
    while (!loaded) {
      if (store.up) await reloadSoon();
      if (!loaded) await new Promise((r) => setTimeout(r, 200));
    }
  })();
  const timer = setInterval(() => store.up && void reloadSoon(), opts.resyncMs ?? 30_000);
  timer.unref();

  return {
    ready,
    checkNew(p) {
      const s = status.get(p.org);
      if (s === 'suspended') throw new AuthError('org_suspended');
      // Before the first load a suspended org would slip through: fail closed, as for revocations.
      if (!loaded) throw new HubError('unavailable', 'org_directory_unavailable');
      // The platform operator is served whatever its own org, or no org could ever be created.
      if (opts.provisioning === 'explicit' && s === undefined && !p.roles.includes('platform')) throw new AuthError('org_unknown');
    },
    async publish(r) {
      try {
        await store.put(r);
      } catch (err) {
        throw new HubError('unavailable', 'org directory unavailable; nothing was changed', { cause: err });
      }
      apply(r.org, r.status);
      changed(r.org);
      try {
        bus.publishControl(ORG_CONTROL, Buffer.from(JSON.stringify({ org: r.org, status: r.status })));
      } catch {
        log.warn({ org: r.org }, 'org status stored but not announced (NATS down); other nodes apply it at their next resync');
      }
    },
    onChange(listener) {
      listeners.push(listener);
    },
    close() {
      clearInterval(timer);
      stopControl();
      stopAdd();
    },
  };
}

export function withOrgCheck(inner: TokenVerifier, dir: Pick<OrgDirectory, 'checkNew'>): TokenVerifier {
  return {
    async verify(token) {
      const p = await inner.verify(token);
      dir.checkNew(p);
      return p;
    },
    close: () => inner.close?.(),
  };
}
