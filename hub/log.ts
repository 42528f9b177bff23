import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

/**
 * The hub's logger. Anything that can hold a credential is redacted by path, and tokens are
 * never passed to the logger in the first place: log `sub`, `org`, `jti`, never the JWT.
 */
export function createLogger(level: string, dest?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { svc: 'orghub' },
      redact: {
        paths: ['token', '*.token', 'authorization', '*.authorization', 'headers.authorization', 'password', '*.password', 'secret', '*.secret', 'access_token', '*.access_token'],
        censor: '[redacted]',
      },
    },
    dest,
  );
}
