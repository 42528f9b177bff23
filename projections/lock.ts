import pg from 'pg';

/** Advisory-lock namespace of projections (first key of the two-int form). */
const NAMESPACE = 'orghub.projection';

export interface HeldLock {
  /** Set once the lock's connection is lost: the lock is gone with it. */
  readonly lost: boolean;
  release(): Promise<void>;
}

/**
 * One active instance per projection across processes: a session advisory lock held on a
 * dedicated connection. It lives exactly as long as that connection, so when the active process
 * dies (even kill -9) Postgres drops it at once, and a standby polling every `pollMs` takes over.
 * Resolves undefined when `stopped()` turns true first.
 */
export async function acquireProjectionLock(opts: {
  databaseUrl: string;
  name: string;
  pollMs: number;
  stopped: () => boolean;
  onError: (err: unknown) => void;
  sleep: (ms: number) => Promise<void>;
}): Promise<HeldLock | undefined> {
  while (!opts.stopped()) {
    const client = new pg.Client({ connectionString: opts.databaseUrl, application_name: `orghub-projector:${process.pid}:lock:${opts.name}`, keepAlive: true });
    let lost = false;
    client.on('error', (err) => {
      lost = true;
      opts.onError(err);
    });
    client.on('end', () => (lost = true));
    try {
      await client.connect();
      while (!opts.stopped() && !lost) {
        const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtext($1), hashtext($2)) AS ok', [NAMESPACE, opts.name]);
        if (rows[0].ok) {
          return {
            get lost() {
              return lost;
            },
            async release() {
              await client.end().catch(() => {});
            },
          };
        }
        await opts.sleep(opts.pollMs);
      }
    } catch (err) {
      opts.onError(err);
    }
    await client.end().catch(() => {});
    if (!opts.stopped()) await opts.sleep(opts.pollMs);
  }
  return undefined;
}
