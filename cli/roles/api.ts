import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../api/app';
import { TokenBook } from '../../api/auth/tokens';
import { type ProjectionLagSource, readinessCheck } from '../../api/health';
import type { Env } from '../../infra/config/env';
import { type Projector, type ReadStore, startProjector } from '../../projections';
import { type RoleHandle, type Shared, isNatsConnected, recordProjectionLagEvery } from './shared';

/** The api role: the HTTP API (Fastify) with auth, idempotency, OpenAPI and the console. */
export async function startApi(
  env: Env,
  shared: Shared,
  opts: { store: ReadStore; lag?: ProjectionLagSource },
): Promise<RoleHandle & { app: FastifyInstance; url: string }> {
  const { nc, registry, commands, registryCommands, eventStore, metrics, log, uploads, uploadKey } = shared;
  const tokens = TokenBook.fromSources({
    ...(env.SLUICE_API_TOKENS ? { json: env.SLUICE_API_TOKENS } : {}),
    ...(env.SLUICE_API_TOKENS_FILE ? { file: env.SLUICE_API_TOKENS_FILE } : {}),
  });
  if (tokens.size === 0)
    log.warn(
      'no API tokens configured (SLUICE_API_TOKENS / SLUICE_API_TOKENS_FILE): every request will be refused',
    );
  const { store } = opts;
  // Projection lag: from the projector running here, else from the stored checkpoints.
  let statusOnly: Projector | undefined;
  let lag = opts.lag;
  let recording: { stop: () => void } | undefined;
  if (!lag) {
    const projector = await startProjector({ nc, store, only: [], log });
    statusOnly = projector;
    lag = () => projector.status();
    recording = recordProjectionLagEvery(shared, lag);
  }
  const app = await buildApp({
    store,
    policies: registry,
    commands: commands,
    registry: registryCommands,
    events: eventStore,
    tokens,
    metrics,
    log,
    ...(uploads && uploadKey ? { uploads: { store: uploads, secret: uploadKey, log } } : {}),
    ...(env.SLUICE_API_TLS_CERT && env.SLUICE_API_TLS_KEY
      ? {
          https: { cert: readFileSync(env.SLUICE_API_TLS_CERT), key: readFileSync(env.SLUICE_API_TLS_KEY) },
        }
      : {}),
    readiness: readinessCheck({
      natsConnected: () => isNatsConnected(nc),
      store,
      projections: lag,
      maxLag: env.SLUICE_READY_MAX_LAG,
      metrics,
    }),
  });
  const address = await app.listen({ host: env.SLUICE_API_HOST, port: env.SLUICE_API_PORT });
  log.info({ url: address }, 'API listening');
  return {
    app,
    url: address,
    stop: async () => {
      await app.close();
      recording?.stop();
      await statusOnly?.stop();
    },
  };
}
