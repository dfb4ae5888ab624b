import type { Env } from '../../infra/config/env';
import { serveCommands } from '../../worker/commands';
import { IngressWorker } from '../../worker/ingress-worker';
import { REGISTRY_VERBS, type RegistryVerb } from '../../worker/registry-commands';
import { RegistryFollower } from '../../worker/registry-follower';
import { VerifyScheduler } from '../../worker/verify-scheduler';
import type { RoleHandle, Shared } from './shared';

/**
 * The worker role: drains the ingress partitions it leases, serves `edge.cmd.*`, follows registry
 * approvals and schedules verify runs.
 */
export async function startWorker(env: Env, shared: Shared): Promise<RoleHandle> {
  const { nc, handler, registry, registries, registryCommands, commands, fleetOf, log, metrics, uploads } =
    shared;
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
  log.info('worker started: consuming ingress, serving edge.cmd.*');
  return {
    stop: async () => {
      sub.unsubscribe();
      await verifies.stop();
      await follower.stop();
      await worker.stop();
    },
  };
}
