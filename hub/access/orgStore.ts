import { Redis } from 'ioredis';
import type { OrgRecord } from './org.ts';

/** Where the org directory lives. Adapter below (Redis); every change is also an event in the org's `org` stream. */
export interface OrgStore {
  /** False when the org exists already. */
  create(r: OrgRecord): Promise<boolean>;
  get(org: string): Promise<OrgRecord | undefined>;
  /** Every org (the directory is small: one record per tenant). */
  all(): Promise<OrgRecord[]>;
  put(r: OrgRecord): Promise<void>;
  readonly up: boolean;
  onUp(listener: () => void): void;
  close(): Promise<void>;
}

export const ORGS_KEY = 'orghub:orgs';
export function orgKey(org: string): string {
  return `orghub:org:${org}`;
}

const CREATE_LUA = `if redis.call('SET', KEYS[1], ARGV[1], 'NX') then redis.call('SADD', KEYS[2], ARGV[2]) return 1 end return 0`;

function parse(v: string | null): OrgRecord | undefined {
  if (!v) return undefined;
  try {
    const r = JSON.parse(v) as OrgRecord;
    return typeof r.org === 'string' && (r.status === 'active' || r.status === 'suspended') ? r : undefined;
  } catch {
    return undefined;
  }
}

export function createRedisOrgStore(url: string): OrgStore {
  const redis = new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: (n) => Math.min(100 * n, 1000) });
  redis.on('error', () => {});
  const listeners: (() => void)[] = [];
  redis.on('ready', () => listeners.forEach((l) => l()));
  return {
    get up() {
      return redis.status === 'ready';
    },
    onUp(l) {
      listeners.push(l);
    },
    async create(r) {
      return (await redis.eval(CREATE_LUA, 2, orgKey(r.org), ORGS_KEY, JSON.stringify(r), r.org)) === 1;
    },
    async get(org) {
      const r = parse(await redis.get(orgKey(org)));
      return r && r.org === org ? r : undefined;
    },
    async all() {
      const orgs = await redis.smembers(ORGS_KEY);
      const out: OrgRecord[] = [];
      for (let i = 0; i < orgs.length; i += 500) {
        const chunk = orgs.slice(i, i + 500);
        const values = await redis.mget(chunk.map(orgKey));
        values.forEach((v, j) => {
          const r = parse(v);
          if (r && r.org === chunk[j]) out.push(r);
        });
      }
      return out;
    },
    async put(r) {
      await redis.multi().set(orgKey(r.org), JSON.stringify(r)).sadd(ORGS_KEY, r.org).exec();
    },
    async close() {
      redis.disconnect();
    },
  };
}
