import { loadConfig } from './config/config.ts';
import { ConfigError } from './errors.ts';
import { createLogger } from './log.ts';
import { startHub } from './server.ts';
import { hubExtensions } from './extensions.ts';
import { createEventStore } from './eventstore/factory.ts';
import { createReadModels } from './readmodels/factory.ts';

/** Process entry: config errors exit with status 2 and a message naming the variable. */
async function main() {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`orghub: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.ORGHUB_LOG_LEVEL);
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception');
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));

  let hub;
  try {
    const store = await createEventStore(config, log);
    hub = await startHub(config, log, { store, readModels: createReadModels(config, log), extensions: hubExtensions() });
  } catch (err) {
    // Start-up failures that name a setting (bad value, busy port) exit 2 with that message.
    if (err instanceof ConfigError) {
      log.fatal(err.message);
      process.stderr.write(`orghub: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, drainTimeoutMs: config.ORGHUB_DRAIN_TIMEOUT_MS }, 'draining');
    // The deadline wins over a drain that hangs (a dependency down): exit 1 so the orchestrator sees it.
    const deadline = setTimeout(() => {
      log.error({ drainTimeoutMs: config.ORGHUB_DRAIN_TIMEOUT_MS }, 'drain deadline reached, exiting');
      process.exit(1);
    }, config.ORGHUB_DRAIN_TIMEOUT_MS);
    await hub.stop(config.ORGHUB_DRAIN_TIMEOUT_MS / 2).catch((err) => log.error({ err }, 'shutdown failed'));
    clearTimeout(deadline);
    log.info({ signal }, 'drained');
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

void main();
