import type { KeyObject } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import type { FastifyInstance } from 'fastify';
import { ROLES, type Role } from './role-names';
import { buildApp } from '../api/app';
import { TokenBook } from '../api/auth/tokens';
import { type ProjectionLagSource, readinessCheck, recordProjectionLag } from '../api/health';
import { ControlDispatcher } from '../bridge/downlink/dispatcher';
import { UplinkBridge } from '../bridge/uplink/bridge';
import { toPrivateKey } from '../infra/security/control-signature';
import { type Env, parseReadStore, topicFleets, topicProjects } from '../infra/config/env';
import { type Logger, createLogger } from '../infra/log';
import { createMetrics } from '../infra/metrics';
import { JetStreamEventStore } from '../infra/nats/event-store';
import { Registry } from '../infra/nats/registry';
import { KvSnapshotStore } from '../infra/nats/snapshots';
import { ensureStreams, isStreamSettingError } from '../infra/nats/streams';
import { type Projector, type ReadStore, migrate, openReadStore, startProjector } from '../projections';
import { CommandService, projectorCommands, serveCommands } from '../worker/commands';
import { LineageCommandHandler } from '../worker/handler';
import { IngressWorker } from '../worker/ingress-worker';
import { RegistryEventStore } from '../infra/nats/registry-events';
import { REGISTRY_VERBS, RegistryCommandService, type RegistryVerb } from '../worker/registry-commands';
import { RegistryFollower } from '../worker/registry-follower';
import { RegistryCommandHandler } from '../worker/registry-handler';
import { VerifyScheduler } from '../worker/verify-scheduler';
import { openUploadStore } from '../infra/uploads/store';
import { uploadSecret, uploadUrl } from '../infra/uploads/token';

export { ROLES, type Role };

export type Running = {
  nc: NatsConnection;
  log: Logger;
  api?: { app: FastifyInstance; url: string };
  projector?: Projector;
  store?: ReadStore;
  stop: () => Promise<void>;
};

function loadSigningKey(env: Env): KeyObject | undefined {
  const text =
    env.SLUICE_CONTROL_SIGNING_KEY ??
    (env.SLUICE_CONTROL_SIGNING_KEY_FILE
      ? readFileSync(env.SLUICE_CONTROL_SIGNING_KEY_FILE, 'utf8')
      : undefined);
  return text ? toPrivateKey(text) : undefined;
}

export type RoleOptions = { only?: string[] };

/** Whether a connection is up right now (between a `disconnect` and its `reconnect` it is not). */
const natsUp = new WeakMap<NatsConnection, boolean>();
export const isNatsConnected = (nc: NatsConnection): boolean => !nc.isClosed() && natsUp.get(nc) !== false;

export async function connectNats(env: Env, log: Logger, name: string): Promise<NatsConnection> {
  const nc = await connect({
    servers: env.SLUICE_NATS_URL.split(',').map((u) => u.trim()),
    name,
    ...(env.SLUICE_NATS_USER ? { user: env.SLUICE_NATS_USER, pass: env.SLUICE_NATS_PASSWORD ?? '' } : {}),
    ...(env.SLUICE_NATS_TLS_CA ? { tls: { caFile: env.SLUICE_NATS_TLS_CA } } : {}),
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
  });
  natsUp.set(nc, true);
  (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect' || s.type === 'reconnect') {
        natsUp.set(nc, s.type === 'reconnect');
        log.warn({ status: s.type }, 'NATS connection status');
      }
    }
  })().catch(() => undefined);
  return nc;
}

/**
 * Unique per bridge (two on one id take each other's session) and stable across restarts of the
 * same bridge (its persistent session holds the uplinks it had not acked): the host name, or
 * SLUICE_BRIDGE_ID where several bridges share a host. docs/scale-out.md.
 */
export function bridgeClientId(env: Env): string {
  if (env.SLUICE_BRIDGE_CLIENT_ID) return env.SLUICE_BRIDGE_CLIENT_ID;
  const id = env.SLUICE_BRIDGE_ID ?? hostname().replace(/[^A-Za-z0-9_-]/g, '-');
  return `sluice-bridge-${id}`;
}

/** The bridge's TLS material for the broker (files read once, at start). */
function mqttTls(env: Env): { ca?: Buffer; cert?: Buffer; key?: Buffer } {
  return {
    ...(env.SLUICE_MQTT_TLS_CA ? { ca: readFileSync(env.SLUICE_MQTT_TLS_CA) } : {}),
    ...(env.SLUICE_MQTT_TLS_CERT ? { cert: readFileSync(env.SLUICE_MQTT_TLS_CERT) } : {}),
    ...(env.SLUICE_MQTT_TLS_KEY ? { key: readFileSync(env.SLUICE_MQTT_TLS_KEY) } : {}),
  };
}

export async function openStore(env: Env): Promise<ReadStore> {
  const loc = parseReadStore(env.SLUICE_READ_STORE);
  if (loc.kind === 'sqlite') mkdirSync(dirname(loc.path), { recursive: true });
  const store = openReadStore(loc);
  await migrate(store);
  return store;
}

/**
 * The composition root: builds the clients of the roles asked for, in one process. `sluice all`
 * asks for every role; each role also runs alone, any number of times, against shared NATS and
 * a shared read store.
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

  if (roles.includes('worker')) {
    const worker = new IngressWorker({
      nc,
      handler,
      registry,
      registries,
      fleetOf,
      log,
      metrics,
      replicas: env.SLUICE_STREAM_REPLICAS,
      ...(env.SLUICE_WORKER_ID ? { memberId: env.SLUICE_WORKER_ID } : {}),
      ...(uploads ? { uploads } : {}),
    });
    await worker.start();
    const follower = new RegistryFollower({ nc, lineages: handler, registries, log, policies: registry });
    await follower.start();
    const verifies = new VerifyScheduler({
      commands,
      lineageIds: () => registry.allLineageIds(),
      policy: (p) => registry.policy(p),
      log,
    });
    verifies.start();
    const sub = serveCommands(nc, commands, log, {
      verbs: REGISTRY_VERBS,
      reply: (verb, input) =>
        registryCommands.reply(verb as RegistryVerb, input, (p) => registry.policy(p, { fresh: true })),
    });
    stops.push(async () => {
      sub.unsubscribe();
      await verifies.stop();
      await follower.stop();
      await worker.stop();
    });
    log.info('worker started: consuming ingress, serving edge.cmd.*');
  }

  if (roles.includes('projector') || roles.includes('api')) {
    running.store = await openStore(env);
  }

  if (roles.includes('projector')) {
    const projector = await startProjector({
      nc,
      store: running.store!,
      ...(opts.only ? { only: opts.only } : {}),
      commands: projectorCommands(commands),
      log,
    });
    running.projector = projector;
    stops.push(() => projector.stop());
    log.info({ only: opts.only ?? 'all' }, 'projector started');
  }

  if (roles.includes('bridge')) {
    const bridge = new UplinkBridge({
      nc,
      mqttUrl: env.SLUICE_MQTT_URL,
      clientId: bridgeClientId(env),
      uplinks: env.SLUICE_BRIDGE_UPLINKS,
      ...(env.SLUICE_MQTT_USERNAME
        ? { username: env.SLUICE_MQTT_USERNAME, password: env.SLUICE_MQTT_PASSWORD ?? '' }
        : {}),
      ...(env.SLUICE_MQTT_TLS_CA || env.SLUICE_MQTT_TLS_CERT ? { tls: mqttTls(env) } : {}),
      projectOf: topicProjects(env),
      log,
      metrics,
    });
    await bridge.start();
    if (!signingKey)
      log.warn(
        'no SLUICE_CONTROL_SIGNING_KEY: controls go out unsigned, and agents that verify signatures will drop them',
      );
    const dispatcher = new ControlDispatcher({
      nc,
      registry,
      commands: commands,
      publish: (topic, body) => bridge.publishToDevice(topic, body),
      deviceRootOf: async (lineageId) => {
        const { state } = await handler.load(lineageId);
        return state.status === 'registered' && state.topic_slug !== null
          ? `${state.topic_slug}/${state.device_name}`
          : undefined;
      },
      ...(signingKey ? { signingKey } : {}),
      ...(uploadKey ? { uploadUrl: (claims) => uploadUrl(uploadBase, claims, uploadKey) } : {}),
      log,
    });
    await dispatcher.start();
    stops.push(async () => {
      await dispatcher.stop();
      await bridge.stop();
    });
  }

  // Projection lag: from the projector running here, else from the stored checkpoints.
  let lagSource: ProjectionLagSource | undefined;
  if (running.projector) lagSource = () => running.projector!.status();
  else if (roles.includes('api')) {
    const statusOnly = await startProjector({ nc, store: running.store!, only: [], log });
    lagSource = () => statusOnly.status();
    stops.push(() => statusOnly.stop());
  }
  if (lagSource) {
    const source = lagSource;
    const timer = setInterval(() => {
      source().then(
        (statuses) => recordProjectionLag(metrics, statuses),
        () => undefined,
      );
    }, 5_000);
    timer.unref();
    stops.push(async () => clearInterval(timer));
  }

  if (roles.includes('api')) {
    const tokens = TokenBook.fromSources({
      ...(env.SLUICE_API_TOKENS ? { json: env.SLUICE_API_TOKENS } : {}),
      ...(env.SLUICE_API_TOKENS_FILE ? { file: env.SLUICE_API_TOKENS_FILE } : {}),
    });
    if (tokens.size === 0)
      log.warn(
        'no API tokens configured (SLUICE_API_TOKENS / SLUICE_API_TOKENS_FILE): every request will be refused',
      );
    const store = running.store!;
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
        ...(lagSource ? { projections: lagSource } : {}),
        maxLag: env.SLUICE_READY_MAX_LAG,
        metrics,
      }),
    });
    const address = await app.listen({ host: env.SLUICE_API_HOST, port: env.SLUICE_API_PORT });
    running.api = { app, url: address };
    stops.push(() => app.close());
    log.info({ url: address }, 'API listening');
  }

  running.stop = async () => {
    for (const stop of stops.reverse())
      await stop().catch((err: unknown) => log.warn({ err }, 'stop failed'));
    await running.store?.close();
    await nc.drain().catch(() => undefined);
  };
  return running;
}
