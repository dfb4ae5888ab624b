import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { FastifyInstance } from 'fastify';
import { ROLES, type Role } from './role-names';
import { type Env, topicFleets } from '../infra/config/env';
import { type Logger, createLogger } from '../infra/log';
import { createMetrics } from '../infra/metrics';
import { JetStreamEventStore } from '../infra/nats/event-store';
import { Registry } from '../infra/nats/registry';
import { KvSnapshotStore } from '../infra/nats/snapshots';
import { ensureStreams, isStreamSettingError } from '../infra/nats/streams';
import type { Projector, ReadStore } from '../projections';
import { CommandService } from '../worker/commands';
import { LineageCommandHandler } from '../worker/handler';
import { RegistryEventStore } from '../infra/nats/registry-events';
import { RegistryCommandService } from '../worker/registry-commands';
import { RegistryCommandHandler } from '../worker/registry-handler';
import { openUploadStore } from '../infra/uploads/store';
import { uploadSecret } from '../infra/uploads/token';
import { startApi } from './roles/api';
import { startBridge } from './roles/bridge';
import { startProjector } from './roles/projector';
import { type Shared, connectNats, loadSigningKey, openStore } from './roles/shared';
import { startWorker } from './roles/worker';

export { ROLES, type Role };

export type Running = {
  nc: NatsConnection;
  log: Logger;
  api?: { app: FastifyInstance; url: string };
  projector?: Projector;
  store?: ReadStore;
  stop: () => Promise<void>;
};

export type RoleOptions = { only?: string[] };

/**
 * The composition root of `sluice all` and of every role alone: builds what the roles asked for
 * share (`Shared`), then starts each from its own root in cli/roles/ (worker, projector, bridge,
 * api, in that order). Each role also runs alone, any number of times, against shared NATS and a
 * shared read store. `env` was parsed once, by the entry point.
 */
export async function startRoles(env: Env, roles: readonly Role[], opts: RoleOptions = {}): Promise<Running> {
  const log = createLogger({
    level: env.SLUICE_LOG_LEVEL,
    name: `sluice-${roles.length === ROLES.length ? 'all' : roles.join('+')}`,
  });
  const metrics = createMetrics();
  const nc = await connectNats(env, log, `sluice ${roles.join(',')}`);
  await ensureStreams(await jetstreamManager(nc), { replicas: env.SLUICE_STREAM_REPLICAS }).catch(
    async (err: unknown) => {
      if (isStreamSettingError(err))
        log.error({ code: err.code, stream: err.stream, setting: err.setting }, err.message);
      await nc.close();
      throw err;
    },
  );
  const stops: (() => Promise<void>)[] = [];
  const running: Running = { nc, log, stop: async () => undefined };

  // Every role decides something: the bridge records control deliveries, the projector replays.
  const eventStore = await JetStreamEventStore.create(nc);
  const snapshots = await KvSnapshotStore.open(nc, { replicas: env.SLUICE_STREAM_REPLICAS });
  const handler = new LineageCommandHandler(eventStore, { metrics, snapshots, log });
  const registry = await Registry.open(nc, { replicas: env.SLUICE_STREAM_REPLICAS });
  const commands = new CommandService(handler, registry);
  const registries = new RegistryCommandHandler(await RegistryEventStore.create(nc));
  const registryCommands = new RegistryCommandService(registries, handler, registry);
  const fleetOf = topicFleets(env);

  // The secondary upload flow: objects in a JetStream object store, URLs signed with one secret.
  const signingKey = loadSigningKey(env);
  const uploadKey = uploadSecret({
    ...(env.SLUICE_UPLOAD_SECRET !== undefined ? { secret: env.SLUICE_UPLOAD_SECRET } : {}),
    ...(signingKey ? { signingKey } : {}),
  });
  const uploads =
    roles.includes('worker') || roles.includes('api')
      ? await openUploadStore(nc, { replicas: env.SLUICE_STREAM_REPLICAS })
      : undefined;
  const uploadBase =
    env.SLUICE_UPLOAD_BASE_URL ??
    `${env.SLUICE_API_TLS_CERT ? 'https' : 'http'}://${env.SLUICE_API_HOST}:${env.SLUICE_API_PORT}`;

  const shared: Shared = {
    nc,
    log,
    metrics,
    eventStore,
    handler,
    registry,
    commands,
    registries,
    registryCommands,
    fleetOf,
    signingKey,
    uploadKey,
    uploads,
    uploadBase,
  };

  if (roles.includes('worker')) stops.push((await startWorker(env, shared)).stop);
  if (roles.includes('projector') || roles.includes('api')) running.store = await openStore(env);
  if (roles.includes('projector')) {
    const started = await startProjector(env, shared, {
      store: running.store!,
      ...(opts.only ? { only: opts.only } : {}),
    });
    running.projector = started.projector;
    stops.push(started.stop);
  }
  if (roles.includes('bridge')) stops.push((await startBridge(env, shared)).stop);
  if (roles.includes('api')) {
    const projector = running.projector;
    const started = await startApi(env, shared, {
      store: running.store!,
      ...(projector ? { lag: () => projector.status() } : {}),
    });
    running.api = { app: started.app, url: started.url };
    stops.push(started.stop);
  }

  running.stop = async () => {
    for (const stop of stops.reverse())
      await stop().catch((err: unknown) => log.warn({ err }, 'stop failed'));
    await running.store?.close();
    await nc.drain().catch(() => undefined);
  };
  return running;
}
