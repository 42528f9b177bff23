#!/usr/bin/env node
// `npm start`: setup (deps, services, migrations), then the hub and, once projections/main.ts
// exists, the projector beside it. Signals are forwarded; when either process exits the other is
// stopped and this exits with the first one's status.
// Without ORGHUB_JWT_JWKS or ORGHUB_JWT_HS256_SECRET it creates (once) a development ES256 key in
// .data/dev-keys/ and points ORGHUB_JWT_JWKS at it; scripts/mint-token.ts signs tokens with it.
// ORGHUB_SKIP_SETUP=1 skips the setup step.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { constants } from 'node:os';

const root = fileURLToPath(new URL('..', import.meta.url));
process.chdir(root);
const env = { ...process.env };

if (env.ORGHUB_SKIP_SETUP !== '1') {
  const r = spawnSync('bash', ['infra/local/setup.sh'], { stdio: 'inherit', env });
  if (r.status !== 0) {
    console.error(`orghub: setup failed (exit ${r.status ?? r.signal}); see the lines above`);
    process.exit(r.status || 1);
  }
}

if (!env.ORGHUB_JWT_JWKS && !env.ORGHUB_JWT_HS256_SECRET) {
  // Imported only here, after setup has made sure node_modules (jose) exists.
  const { ensureDevKeys } = await import('../infra/local/dev-keys.mjs');
  const keys = await ensureDevKeys(root);
  env.ORGHUB_JWT_JWKS = keys.jwksPath;
  console.log(
    `dev keys   ${keys.created ? 'created' : 'using'} ${relative(root, keys.jwksPath)} as ORGHUB_JWT_JWKS; ` +
      'mint a token: npm run --silent mint-token -- --org acme --sub alice --roles admin',
  );
}

const children = [];
const run = (name, file) => {
  // Own process group each, so a terminal Ctrl-C reaches them once, through us.
  const child = spawn(process.execPath, ['--import', 'tsx', file], { stdio: 'inherit', env, detached: true });
  child.name = name;
  children.push(child);
  child.on('exit', (code, signal) => onExit(child, code, signal));
  return child;
};

let exitCode;
function onExit(child, code, signal) {
  child.exited = true;
  if (exitCode === undefined) {
    exitCode = code ?? 128 + (constants.signals[signal] ?? 1);
    if (!stopping) console.error(`orghub: ${child.name} exited (${code ?? signal}); stopping the rest`);
    stopAll('SIGTERM');
  }
  if (children.every((c) => c.exited)) process.exit(exitCode);
}

let stopping = false;
function stopAll(sig) {
  for (const c of children) {
    if (!c.exited) {
      try {
        process.kill(-c.pid, sig);
      } catch {
        /* already gone */
      }
    }
  }
  // A process that ignores the request gets no more than 15 s.
  setTimeout(() => {
    for (const c of children) if (!c.exited) try { process.kill(-c.pid, 'SIGKILL'); } catch { /* gone */ }
  }, 15_000).unref();
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    stopping = true;
    // The hub has no SIGHUP handler (it would die uncleanly): a hang-up becomes a clean stop.
    stopAll(sig === 'SIGHUP' ? 'SIGTERM' : sig);
  });
}

run('hub', 'hub/main.ts');
if (existsSync(join(root, 'projections', 'main.ts'))) run('projector', 'projections/main.ts');
