import pino, { type Logger } from 'pino';

export type { Logger };

/** One structured logger per process; secrets are redacted wherever they might appear. */
export function createLogger(opts: { level?: string; name?: string } = {}): Logger {
  return pino({
    name: opts.name ?? 'sluice',
    level: opts.level ?? 'info',
    // ISO times, as the agent's log has them, so the two logs read side by side.
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: {
      paths: [
        'password',
        '*.password',
        'token',
        '*.token',
        'authorization',
        '*.authorization',
        'privateKey',
        '*.privateKey',
      ],
      censor: '[redacted]',
    },
  });
}

export const silentLogger = (): Logger => pino({ level: 'silent' });
