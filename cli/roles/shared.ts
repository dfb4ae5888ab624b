import type { KeyObject } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { type ConnectionOptions, connect, type NatsConnection } from '@nats-io/transport-node';
import { type ProjectionLagSource, recordProjectionLag } from '../../api/health';
import { type Env, parseReadStore } from '../../infra/config/env';
import type { Logger } from '../../infra/log';
import type { Metrics } from '../../infra/metrics';
import type { JetStreamEventStore } from '../../infra/nats/event-store';
import type { Registry } from '../../infra/nats/registry';
import { toPrivateKey } from '../../infra/security/control-signature';
import type { openUploadStore } from '../../infra/uploads/store';
import { type ReadStore, migrate, openReadStore } from '../../projections';
import type { CommandService } from '../../worker/commands';
import type { LineageCommandHandler } from '../../worker/handler';
import type { RegistryCommandService } from '../../worker/registry-commands';
import type { RegistryCommandHandler } from '../../worker/registry-handler';

/**
 * What the roles of one process share, built once by `startRoles` (cli/roles.ts): the NATS
 * connection, the logger and metrics, and the command side every role decides through.
 */
export type Shared = Readonly<{
  nc: NatsConnection;
  log: Logger;
  metrics: Metrics;
  eventStore: JetStreamEventStore;
  handler: LineageCommandHandler;
  registry: Registry;
  commands: CommandService;
  registries: RegistryCommandHandler;
  registryCommands: RegistryCommandService;
  fleetOf: (slug: string) => string | null;
  signingKey: KeyObject | undefined;
  /** The HMAC key of upload URLs; none when neither SLUICE_UPLOAD_SECRET nor a signing key is set. */
  uploadKey: Buffer | undefined;
  /** The upload object store (worker and api only). */
  uploads: Awaited<ReturnType<typeof openUploadStore>> | undefined;
  uploadBase: string;
}>;

/** A started role: stopping it ends everything it started (not what it was given in `Shared`). */
export type RoleHandle = Readonly<{ stop: () => Promise<void> }>;

export function loadSigningKey(env: Env): KeyObject | undefined {
  const text =
    env.SLUICE_CONTROL_SIGNING_KEY ??
    (env.SLUICE_CONTROL_SIGNING_KEY_FILE
      ? readFileSync(env.SLUICE_CONTROL_SIGNING_KEY_FILE, 'utf8')
      : undefined);
  return text ? toPrivateKey(text) : undefined;
}

/** Whether a connection is up right now (between a `disconnect` and its `reconnect` it is not). */
const natsUp = new WeakMap<NatsConnection, boolean>();
export const isNatsConnected = (nc: NatsConnection): boolean => !nc.isClosed() && natsUp.get(nc) !== false;

export async function connectNats(
  env: Env,
  log: Logger,
  name: string,
  extra: Partial<ConnectionOptions> = {},
): Promise<NatsConnection> {
  const nc = await connect({
    servers: env.SLUICE_NATS_URL.split(',').map((u) => u.trim()),
    name,
    ...(env.SLUICE_NATS_USER ? { user: env.SLUICE_NATS_USER, pass: env.SLUICE_NATS_PASSWORD ?? '' } : {}),
    ...(env.SLUICE_NATS_TLS_CA ? { tls: { caFile: env.SLUICE_NATS_TLS_CA } } : {}),
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    // Without this the client makes an Error (a stack trace) at every request, to give a timeout
    // the caller's stack: in a CPU profile of the 50-device bench stage, 1.7 % of the worker's
    // time (0.6 % with it off), for traces our logs never print.
    noAsyncTraces: true,
    ...extra,
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

/** Record the projections' lag in the metrics every 5 s (the API's /metrics and /readyz read it). */
export function recordProjectionLagEvery(shared: Shared, source: ProjectionLagSource): { stop: () => void } {
  const timer = setInterval(() => {
    source().then(
      (statuses) => recordProjectionLag(shared.metrics, statuses),
      () => undefined,
    );
  }, 5_000);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

export async function openStore(env: Env): Promise<ReadStore> {
  const loc = parseReadStore(env.SLUICE_READ_STORE);
  if (loc.kind === 'sqlite') mkdirSync(dirname(loc.path), { recursive: true });
  const store = openReadStore(loc);
  await migrate(store);
  return store;
}
