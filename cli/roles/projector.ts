import type { Env } from '../../infra/config/env';
import type { Projector, ReadStore } from '../../projections';
import * as runner from '../../projections/runner/projector';
import { projectorCommands } from '../../worker/commands';
import { type RoleHandle, type Shared, recordProjectionLagEvery } from './shared';

/** The projector role: folds the lineage and registry streams into the read store. */
export async function startProjector(
  _env: Env,
  shared: Shared,
  opts: { store: ReadStore; only?: string[] },
): Promise<RoleHandle & { projector: Projector }> {
  const { nc, commands, log } = shared;
  const projector = await runner.startProjector({
    nc,
    store: opts.store,
    ...(opts.only ? { only: opts.only } : {}),
    commands: projectorCommands(commands),
    log,
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
