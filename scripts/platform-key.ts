// Platform API keys from the operator's shell (docs/access.md "Platform API keys"): the way to get
// the first one, before any platform principal exists to call POST /v1/platform/apikeys.
//
//   npm run --silent platform-key -- create [--name <text>] [--expires <ISO 8601>]
//   npm run --silent platform-key -- list
//   npm run --silent platform-key -- revoke <id>
//
// It reads the hub's own configuration (REDIS_URL, NATS_URL, ORGHUB_APIKEY_PEPPER,
// ORGHUB_CLUSTER_SECRET, the event store settings) and goes through the same code as the HTTP API:
// the key store in Redis, the `jti` revocation announced to every node over NATS, and an event in
// `_platform`'s `access` stream. `create` prints the key on stdout, once; the rest goes to stderr.
import { randomBytes, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { clusterSecret, DEV_APIKEY_PEPPER } from '../hub/access/access.ts';
import { API_KEY_ID_RE, parsePlatformKeyRequest } from '../hub/access/apiKey.ts';
import { createApiKeys } from '../hub/access/apiKeys.ts';
import { createPlatformKeys } from '../hub/access/keyLifecycle.ts';
import { createRedisApiKeyStore } from '../hub/access/redisApiKeyStore.ts';
import { createRedisRevocationStore } from '../hub/access/redisRevocationStore.ts';
import { createRevocations } from '../hub/access/revocations.ts';
import { createNatsBus } from '../hub/bus/natsBus.ts';
import { withSignedControl } from '../hub/bus/signedControl.ts';
import { loadConfig } from '../hub/config/config.ts';
import { SessionRegistry } from '../hub/core/sessions.ts';
import { HubError } from '../hub/errors.ts';
import { createEventStore } from '../hub/eventstore/factory.ts';
import { createLogger } from '../hub/log.ts';

const usage = 'usage: platform-key create [--name <text>] [--expires <ISO 8601>] | list | revoke <id>';
const { values, positionals } = parseArgs({ allowPositionals: true, options: { name: { type: 'string' }, expires: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
const [cmd, id] = positionals;
if (values.help || !cmd || !['create', 'list', 'revoke'].includes(cmd) || (cmd === 'revoke' && !id)) {
  process.stderr.write(`${usage}\n`);
  process.exit(values.help ? 0 : 2);
}

let config;
try {
  // The CLI verifies no token: without the hub's JWT settings, a throwaway HS256 secret satisfies the check.
  const env = process.env.ORGHUB_JWT_JWKS || process.env.ORGHUB_JWT_HS256_SECRET ? process.env : { ...process.env, ORGHUB_JWT_HS256_SECRET: randomBytes(48).toString('base64url') };
  config = loadConfig(env);
} catch (err) {
  process.stderr.write(`platform-key: ${(err as Error).message}\n`);
  process.exit(2);
}
const log = createLogger(process.env.ORGHUB_LOG_LEVEL ?? 'error', undefined);
const keyStore = createRedisApiKeyStore(config.REDIS_URL);
const revocationStore = createRedisRevocationStore(config.REDIS_URL, log);
const nats = createNatsBus({ servers: config.NATS_URL, name: 'orghub platform-key', log });
const bus = withSignedControl(nats, clusterSecret(config), log);
const revocations = createRevocations({ store: revocationStore, bus, sessions: new SessionRegistry(), log, maxPerOrg: config.ORGHUB_REVOCATIONS_MAX });
const apiKeys = createApiKeys({ store: keyStore, pepper: config.ORGHUB_APIKEY_PEPPER || DEV_APIKEY_PEPPER, maxPerOrg: config.ORGHUB_APIKEYS_MAX, log });
const store = cmd === 'list' ? undefined : await createEventStore(config, log);
const keys = createPlatformKeys({ apiKeys, revocations, maxTtlSec: config.ORGHUB_JWT_MAX_TTL, store });
const by = { actor: `cli:${process.env.USER ?? 'operator'}@${hostname()}`, session: randomUUID(), node: 'platform-key-cli' };

/** The Redis connection is lazy and fails fast: wait until it answers (or give up). */
const waitFor = async (cond: () => boolean, ms: number) => {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  return cond();
};

let code = 0;
try {
  if (!(await waitFor(() => revocationStore.up, 5000))) throw new HubError('unavailable', `Redis at ${config.REDIS_URL} does not answer`);
  if (cmd === 'create') {
    const req = parsePlatformKeyRequest({ ...(values.name !== undefined ? { name: values.name } : {}), ...(values.expires !== undefined ? { expiresAt: values.expires } : {}) }, Date.now());
    const out = await keys.create(req, by);
    process.stderr.write(`created platform API key ${String(out.apiKey.id)} (shown once; only its HMAC is stored)\n`);
    process.stdout.write(`${out.key}\n`);
  } else if (cmd === 'list') {
    process.stdout.write(`${JSON.stringify({ apiKeys: await keys.list() }, null, 2)}\n`);
  } else {
    if (!API_KEY_ID_RE.test(id!)) throw new HubError('invalid', 'the id is 16 hex characters (the part after ohk_)');
    // Announced over NATS so every node refuses the key at once; without NATS, at their next resync (30 s).
    await Promise.race([nats.ready, new Promise((r) => setTimeout(r, 5000))]);
    const out = await keys.revoke(id!, by);
    if (!out) throw new HubError('not_found', `no platform API key ${id}`);
    await bus.flush();
    process.stderr.write(`revoked ${id}${out.announced ? ', announced to every node' : '; NATS unreachable: nodes refuse it at their next resync (within 30 s)'}\n`);
  }
} catch (err) {
  process.stderr.write(`platform-key: ${(err as Error).message}\n`);
  code = err instanceof HubError && err.code === 'invalid' ? 2 : 1;
} finally {
  revocations.close();
  await Promise.allSettled([nats.close(), keyStore.close(), revocationStore.close(), store?.close()]);
}
process.exit(code);
