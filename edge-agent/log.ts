import { type Logger, createLogger } from '../infra/log';

/**
 * The agent's log: one JSON line per event (`event` names it: publish, confirm, pause, resume,
 * drop, ...), each with the agent and its device, written before the agent goes on.
 */
export function agentLogger(deviceId: string, level?: string): Logger {
  return createLogger({
    ...(level !== undefined ? { level } : {}),
    base: { svc: 'sluice-agent', ...(deviceId ? { device: deviceId } : {}) },
    sync: true,
  });
}
