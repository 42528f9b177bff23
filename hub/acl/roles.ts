/**
 * Default grants per role. `ORGHUB_ROLE_GRANTS` replaces this object wholesale (see `parseRoleGrants`).
 * Every pattern is org-relative: the org boundary is enforced by construction (subjects are always
 * built under the token's org), so `#` here means "everything inside the caller's org".
 */
import { ConfigError } from '../errors.ts';
import type { GrantSpec } from '../auth/principal.ts';
import { validateRoleGrants, type RoleGrants } from './grants.ts';

/**
 * A device owns the subtree `devices/<sub>/...` (one or more segments below it). It receives its
 * fleet commands on `$commands/<sub>` (a system topic only the hub publishes on, docs/fleet.md)
 * and acks them there, so a device token needs no `acl` claim.
 */
const device: GrantSpec = {
  pub: ['devices/{sub}/#'],
  sub: ['devices/{sub}/#', '$commands/{sub}'],
  cmd: [
    { type: 'fleet.ack', topic: '$commands/{sub}' },
    { type: 'fleet.ack', topic: 'devices/{sub}/#' },
  ],
};

/**
 * An org admin sees and publishes every ordinary topic and issues every command type in the org.
 * `#` never covers `$` system topics, so presence is granted explicitly, and for subscribing only:
 * presence events are produced by the hub, not forged by clients.
 */
const admin: GrantSpec = {
  pub: ['#'],
  sub: ['#', '$presence/#'],
  cmd: [{ type: '*', topic: '#' }],
  read: ['*'],
};

/**
 * Devices and services read no read model by default (the audit log and the fleet's state are the
 * org admin's); grant `read` in ORGHUB_ROLE_GRANTS or a token's `acl` claim to change that.
 *
 * A backend service publishes and listens on every ordinary topic of its org but issues no commands:
 * commands are the audited, user-attributable path and go through admins (or the service is given
 * an explicit `cmd` grant in its token's `acl` claim).
 */
const service: GrantSpec = {
  pub: ['#'],
  sub: ['#'],
};

function deepFreeze<T>(o: T): T {
  if (o !== null && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

/** Built-in role defaults (`device`, `admin`, `service`); frozen because compiled grants are cached per object. */
export const defaultRoleGrants: RoleGrants = deepFreeze({ device, admin, service });

/**
 * Parses and validates `ORGHUB_ROLE_GRANTS` (a JSON object `{"role":{"pub":[..],"sub":[..],"cmd":[..],"read":[..]}}`).
 * Throws ConfigError naming ORGHUB_ROLE_GRANTS, the role and the bad entry. The result replaces the
 * defaults; spread `defaultRoleGrants` into it yourself to extend them instead.
 */
export function parseRoleGrants(json: string): RoleGrants {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (e) {
    throw new ConfigError(`ORGHUB_ROLE_GRANTS is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  validateRoleGrants(parsed, 'ORGHUB_ROLE_GRANTS');
  return deepFreeze(parsed);
}
