import type { TemplatedApp } from '@trufflesuite/uws-js-unofficial';
import { Ajv } from 'ajv';
import type { RoleGrants } from '../acl/grants.ts';
import type { AuditSink } from '../audit/audit.ts';
import type { TokenVerifier } from '../auth/principal.ts';
import type { ClientContext } from '../core/context.ts';
import { HubError } from '../errors.ts';
import type { FleetService } from '../fleet/fleet.ts';
import type { Logger } from '../log.ts';
import { authRoute, invalidBody } from './authRoute.ts';

export interface FleetApiDeps {
  app: TemplatedApp;
  verifier: TokenVerifier;
  roleGrants: RoleGrants;
  audit: AuditSink;
  /** Absent without an event store: the routes answer 503 `unavailable`. */
  fleet?: FleetService;
  log: Logger;
  maxBody: number;
  /** Every device id of the org, for the selector `{"all": true}`; absent while no devices read model is mounted. */
  allDevices?: (org: string, max: number) => Promise<string[]>;
  maxBulk: number;
}

const common = {
  type: { type: 'string', minLength: 1, maxLength: 32 },
  data: {},
  expiresIn: { type: 'integer' },
  key: { type: 'string', minLength: 1, maxLength: 200 },
};
const issueSchema = { type: 'object', required: ['type'], properties: common, additionalProperties: false };
const bulkSchema = {
  type: 'object',
  required: ['type', 'selector'],
  properties: {
    ...common,
    selector: {
      oneOf: [
        { type: 'object', required: ['devices'], properties: { devices: { type: 'array', minItems: 1, items: { type: 'string' } } }, additionalProperties: false },
        { type: 'object', required: ['all'], properties: { all: { const: true } }, additionalProperties: false },
      ],
    },
  },
  additionalProperties: false,
};

/**
 * The fleet command routes (docs/fleet.md): issue to one device, to many, and cancel. The org is
 * the token's; a command id of another org is simply not found.
 */
export function mountFleetApi(deps: FleetApiDeps): void {
  const { app } = deps;
  const fleetOf = (): FleetService => {
    if (!deps.fleet) throw new HubError('unavailable', 'fleet commands need the event store (ORGHUB_EVENT_STORE=none)');
    return deps.fleet;
  };
  const ajv = new Ajv({ allErrors: false });
  const validateIssue = ajv.compile(issueSchema);
  const validateBulk = ajv.compile(bulkSchema);
  const route = (n: number, withBody: boolean, h: (ctx: ClientContext, params: string[], body: unknown) => Promise<{ status: number; body: unknown }>) =>
    authRoute(deps, n, withBody, ({ ctx, params, body }) => h(ctx, params, body));
  const invalid = invalidBody;

  app.post(
    '/v1/devices/:id/commands',
    route(1, true, async (ctx, [deviceId], body) => {
      fleetOf();
      if (!validateIssue(body)) throw invalid(validateIssue);
      const b = body as { type: string; data?: unknown; expiresIn?: number; key?: string };
      const r = await fleetOf().issue(ctx, deviceId, { type: b.type, data: b.data ?? {}, expiresIn: b.expiresIn, key: b.key });
      return { status: 202, body: r };
    }),
  );

  app.del(
    '/v1/devices/:id/commands/:commandId',
    route(2, false, async (ctx, [deviceId, commandId]) => ({ status: 200, body: await fleetOf().cancel(ctx, deviceId, commandId) })),
  );

  app.post(
    '/v1/fleet/commands',
    route(0, true, async (ctx, _p, body) => {
      fleetOf();
      if (!validateBulk(body)) throw invalid(validateBulk);
      const b = body as { type: string; data?: unknown; expiresIn?: number; key?: string; selector: { devices?: string[]; all?: true } };
      let devices = b.selector.devices;
      if (!devices) {
        if (!deps.allDevices) throw new HubError('unavailable', 'the selector {"all": true} needs the devices read model, which this hub does not serve');
        devices = await deps.allDevices(ctx.principal.org, deps.maxBulk + 1);
      }
      const r = await fleetOf().issueBulk(ctx, devices, { type: b.type, data: b.data ?? {}, expiresIn: b.expiresIn, key: b.key });
      return { status: 202, body: r };
    }),
  );
}
