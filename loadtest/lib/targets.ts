import { orghubJson, natsWs } from './protocols.ts';
import type { WireProtocol } from './protocol.ts';
import { startHub, startNatsServer, startUwsRaw, hubExists } from './servers.ts';
import type { BenchIssuer } from './tokens.ts';

export type TargetName = 'hub' | 'nats' | 'uws';

/** A server under test, started for one bench and stopped after it. */
export interface Target {
  readonly name: TargetName;
  /** Label for tables, with the version where known. */
  readonly label: string;
  readonly proto: WireProtocol;
  readonly wsUrl: string;
  readonly httpUrl?: string;
  /** The process whose CPU and RSS are reported. */
  readonly pid: number;
  /** Other processes that work for it (the hub's dedicated nats-server), reported separately. */
  readonly helperPids: { label: string; pid: number }[];
  /** Topic for the fan-out bench in this target's syntax. */
  readonly topic: string;
  /** True if connections need a token. */
  readonly needsToken: boolean;
  stop(): Promise<void>;
}

/** Org used for every bench token. */
export const BENCH_ORG = 'bench';

/**
 * Parses `--target`: `hub`, `nats`, `uws`, a comma list, `both` (hub,nats) or `all`.
 */
export function parseTargets(s: string, dflt: TargetName[]): TargetName[] {
  if (!s) return dflt;
  if (s === 'both') return ['hub', 'nats'];
  if (s === 'all') return ['hub', 'nats', 'uws'];
  const xs = s.split(',').map((x) => x.trim()) as TargetName[];
  for (const x of xs) if (!['hub', 'nats', 'uws'].includes(x)) throw new Error(`unknown target ${x} (hub|nats|uws|both|all)`);
  return xs;
}

export async function startTarget(name: TargetName, issuer: BenchIssuer, hubEnv: Record<string, string> = {}): Promise<Target> {
  if (name === 'hub') {
    if (!hubExists()) throw new Error('hub/main.ts does not exist yet: the hub target cannot run');
    const hub = await startHub(issuer.env, hubEnv);
    return {
      name,
      label: 'orghub',
      proto: orghubJson({ authHeader: true }),
      wsUrl: hub.wsUrl,
      httpUrl: hub.httpUrl,
      pid: hub.child.pid,
      helperPids: [{ label: 'nats', pid: hub.nats.child.pid }],
      topic: 'bench/t',
      needsToken: true,
      stop: () => hub.stop(),
    };
  }
  if (name === 'nats') {
    const nats = await startNatsServer({ websocket: true });
    return {
      name,
      label: 'nats-server ws',
      proto: natsWs(),
      wsUrl: nats.wsUrl,
      pid: nats.child.pid,
      helperPids: [],
      topic: 'bench',
      needsToken: false,
      stop: () => nats.stop(),
    };
  }
  const uws = await startUwsRaw();
  return {
    name,
    label: 'uWS.js raw',
    proto: orghubJson({ subprotocol: false }),
    wsUrl: uws.wsUrl,
    httpUrl: uws.httpUrl,
    pid: uws.child.pid,
    helperPids: [],
    topic: 'bench/t',
    needsToken: false,
    stop: () => uws.stop(),
  };
}
