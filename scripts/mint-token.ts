// Signs a development token with the key that `npm start` trusts (.data/dev-keys/, created here
// too when missing) and prints it on stdout.
//
//   node --import tsx scripts/mint-token.ts --org acme --sub alice --roles admin,device --ttl 3600
//   npm run --silent mint-token -- --org acme --sub d-42 --roles device --acl '{"sub":["devices/#"]}'
//
// Issuer, audience and the org claim name follow ORGHUB_JWT_ISSUER, ORGHUB_JWT_AUDIENCE and
// ORGHUB_ORG_CLAIM (defaults orghub-dev, orghub, org), as the hub reads them.
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { importJWK, SignJWT } from 'jose';
import { ensureDevKeys, readDevPrivateKey } from '../infra/local/dev-keys.mjs';

const usage = 'usage: mint-token --org <org> [--sub <id>] [--roles admin,device] [--ttl <seconds>] [--acl <json>] [--jti <id>]';

const { values } = parseArgs({
  options: {
    org: { type: 'string' },
    sub: { type: 'string', default: 'dev-user' },
    roles: { type: 'string', default: 'admin' },
    ttl: { type: 'string', default: '3600' },
    acl: { type: 'string' },
    jti: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help || !values.org) {
  process.stderr.write(`${usage}\n`);
  process.exit(values.help ? 0 : 2);
}
const ttl = Number(values.ttl);
if (!Number.isInteger(ttl) || ttl <= 0) {
  process.stderr.write(`--ttl must be a positive number of seconds\n${usage}\n`);
  process.exit(2);
}
let acl: unknown;
if (values.acl !== undefined) {
  try {
    acl = JSON.parse(values.acl);
  } catch {
    process.stderr.write('--acl must be JSON, e.g. {"pub":["devices/+/telemetry"],"sub":["devices/#"]}\n');
    process.exit(2);
  }
}

const root = fileURLToPath(new URL('..', import.meta.url));
const keys = await ensureDevKeys(root);
const jwk = readDevPrivateKey(keys.privateKeyPath);
const key = await importJWK(jwk, 'ES256');
const orgClaim = process.env.ORGHUB_ORG_CLAIM || 'org';
const roles = values.roles.split(',').map((r) => r.trim()).filter(Boolean);

const token = await new SignJWT({ [orgClaim]: values.org, roles, ...(acl === undefined ? {} : { acl }) })
  .setProtectedHeader({ alg: 'ES256', kid: jwk.kid, typ: 'JWT' })
  .setIssuer(process.env.ORGHUB_JWT_ISSUER || 'orghub-dev')
  .setAudience(process.env.ORGHUB_JWT_AUDIENCE || 'orghub')
  .setSubject(values.sub)
  .setJti(values.jti ?? randomUUID())
  .setIssuedAt()
  .setExpirationTime(`${ttl}s`)
  .sign(key);
process.stdout.write(`${token}\n`);
