import type { Env } from '../../infra/config/env';
import type { Projector, ReadStore } from '../../projections';
import * as runner from '../../projections/runner/projector';
import { projectorCommands } from '../../worker/commands';
import { type RoleHandle, type Shared, recordProjectionLagEvery } from './shared';

/** The projector role: folds the lineage and registry streams into the read store. */
export async function startProjector(
  env: Env,
  shared: Shared,
  opts: { store: ReadStore; only?: string[] },
): Promise<RoleHandle & { projector: Projector }> {
  const { nc, commands, log, metrics } = shared;
  const projector = await runner.startProjector({
    nc,
    store: opts.store,
    ...(opts.only ? { only: opts.only } : {}),
    commands: projectorCommands(commands),
    log,
    metrics: {
      applied: (projection, n) => metrics.projectionMessages.inc({ projection }, n),
      conflict: (projection) => metrics.projectionConflicts.inc({ projection }),
    },
    share: {
      ...(env.SLUICE_PROJECTOR_ID ? { memberId: env.SLUICE_PROJECTOR_ID } : {}),
      ...(env.SLUICE_STREAM_REPLICAS !== undefined ? { replicas: env.SLUICE_STREAM_REPLICAS } : {}),
      onOwned: (group, n) => metrics.partitionsOwned.set({ group }, n),
    },
  });
  const lag = recordProjectionLagEvery(shared, () => projector.status());
  log.info({ only: opts.only ?? 'all' }, 'projector started');
  return {
    projector,
    stop: async () => {
      lag.stop();
      await projector.stop();
    },
  };
}
