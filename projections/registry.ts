import { auditLogProjection } from './audit/auditProjection.ts';
import { deviceCommandsProjection } from './commands/commandsProjection.ts';
import { orgsProjection } from './orgs/orgsProjection.ts';
import type { Projection } from './projection.ts';
import { sessionsProjection } from './sessions/sessionsProjection.ts';

/** Every projection, by name. */
export const PROJECTIONS: readonly Projection[] = [orgsProjection, auditLogProjection, sessionsProjection, deviceCommandsProjection];

/** `all` or a comma-separated list of names; throws naming the unknown ones. */
export function selectProjections(spec: string): Projection[] {
  if (spec === '' || spec === 'all') return [...PROJECTIONS];
  const names = spec.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = names.filter((n) => !PROJECTIONS.some((p) => p.name === n));
  if (unknown.length) throw new Error(`unknown projection(s) ${unknown.join(', ')}; known: ${PROJECTIONS.map((p) => p.name).join(', ')}, all`);
  return PROJECTIONS.filter((p) => names.includes(p.name));
}
