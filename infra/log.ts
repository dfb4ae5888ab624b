import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * Fields censored wherever they appear, at the top of a line or one level down. Secrets are never
 * logged on purpose (configs holding passwords and key material are never logged whole): this is
 * the second guard, one list for the cloud roles and the agent.
 */
const REDACT = [
  'password',
  '*.password',
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'privateKey',
  '*.privateKey',
  'key',
  '*.key',
];

export type LoggerOptions = Readonly<{
  level?: string;
  /** The process's name on every line, beside pid and hostname (the cloud roles: `sluice-<roles>`). */
  name?: string;
  /** Fields every line carries instead of pid and hostname (the agent: `svc`, `device`). */
  base?: Readonly<Record<string, unknown>>;
  /** Write each line to stdout before going on (the agent: its last lines survive a kill -9). */
  sync?: boolean;
}>;

/** One structured logger per process: JSON lines with ISO times, so every log reads side by side. */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const options: pino.LoggerOptions = {
    level: opts.level ?? 'info',
    ...(opts.name !== undefined ? { name: opts.name } : {}),
    ...(opts.base ? { base: { ...opts.base } } : {}),
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACT, censor: '[redacted]' },
  };
  return opts.sync ? pino(options, pino.destination({ dest: 1, sync: true })) : pino(options);
}

export const silentLogger = (): Logger => pino({ level: 'silent' });
