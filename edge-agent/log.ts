import pino, { type Logger } from 'pino';

/**
 * Structured logs, one JSON line per event (`event` names it: publish, confirm, pause, resume,
 * drop, ...). Secrets never reach a log line: the config holds passwords and key material, and
 * it is never logged whole; the redact list is a second guard.
 */
export function createLogger(
  opts: { level?: string; deviceId?: string; destination?: number | string } = {},
): Logger {
  return pino(
    {
      level: opts.level ?? process.env.SLUICE_LOG_LEVEL ?? 'info',
      base: { svc: 'sluice-agent', ...(opts.deviceId ? { device: opts.deviceId } : {}) },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: ['password', '*.password', 'privateKey', '*.privateKey', 'key', '*.key'],
        censor: '[redacted]',
      },
    },
    pino.destination({ dest: opts.destination ?? 1, sync: true }),
  );
}

export const silentLogger = (): Logger => pino({ level: 'silent' });
