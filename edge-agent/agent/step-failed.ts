import type { Logger } from 'pino';
import type { StepFailed } from '../publish/lane';
import type { StateStore } from '../state/state-store';

/**
 * How the agent reports a step that failed (a tick, a woken pump, a downlink, a PUBACK's
 * continuation): the application holding the write lock is routine; a full disk under state.db is
 * said once a minute while it lasts, with what it means; anything else is logged as `what`. The
 * step is retried by the next tick either way, so a failure never stops the agent.
 */
export function stepFailure(
  o: Readonly<{ log: Logger; state: StateStore; now: () => number; stateDbPath: string }>,
): StepFailed {
  let diskFullLoggedAt = -Infinity;
  return (err, event, what) => {
    const code = (err as { code?: string }).code;
    if (code === 'SQLITE_BUSY') {
      o.log.debug({ event, err: (err as Error).message }, 'application holds the write lock; retrying');
    } else if (code === 'SQLITE_FULL') {
      o.state.relieveFullDisk();
      // Once a minute while it lasts: every tick hits it.
      if (o.now() - diskFullLoggedAt < 60_000) return;
      diskFullLoggedAt = o.now();
      o.log.error(
        { event: 'state_disk_full', step: event, state_db: o.stateDbPath, err: (err as Error).message },
        `the disk holding ${o.stateDbPath} is full: the agent cannot record batches or confirmations, so it ` +
          'publishes nothing new. Every change stays in the journal and nothing is lost; free space on that ' +
          'disk and the agent carries on by itself.',
      );
    } else o.log.error({ event, err: (err as Error).message }, what);
  };
}
