import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { uuidv7 } from 'uuidv7';
import { PartitionLeases } from '../../infra/nats/leases';
import { STREAMS } from '../../infra/nats/names';
import { createProjections } from '../registry';
import { migrate } from '../store/migrations';
import type { ReadStore } from '../store/open';
import type { AnyProjection, CommandSender, Log, StreamName } from './types';
import { silentLog } from './types';
import { checkpointNames, readCheckpoints } from './checkpoints';
import { LineagePartitions, PROJECTION_PARTITIONS } from './partitions';
import {
  type BatchLimits,
  DEFAULT_LIMITS,
  type Progress,
  type ProjectionStatus,
  type ProjectorMetrics,
  ProjectionWorker,
} from './worker';

export type ProjectorOptions = Readonly<{
  nc: NatsConnection;
  store: ReadStore;
  /**
   * Run only these projections (`sluice projector --only NAME`); `[]` runs none, for tools that
   * only read `status()` or `rebuild()` one projection.
   */
  only?: readonly string[];
  /** Lets projections report back to the domain (CompleteReplay after a replay). */
  commands?: CommandSender;
  log?: Log;
  /** Replace the built-in projections (tests, tools). */
  projections?: readonly AnyProjection[];
  limits?: Partial<BatchLimits>;
  /**
   * Share the work with the other projectors of the deployment (the `projector` role): the
   * partitions of the partitioned projections, and the other projections whole, are spread over
   * the live projectors through leases (`infra/nats/leases.ts`, groups `projector` and
   * `projector-global`). Without it (tests, tools, `--only`) this projector runs all it selected.
   */
  metrics?: ProjectorMetrics;
  share?: Readonly<{
    /** Stable per process (SLUICE_PROJECTOR_ID): a restart takes its leases back at once. */
    memberId?: string;
    replicas?: number;
    /** After each lease round: how many partitions (or whole projections) this process runs. */
    onOwned?: (group: 'projector' | 'projector-global', owned: number) => void;
  }>;
}>;

export type CaughtUpTarget = number | Partial<Record<StreamName, number>>;

export type Projector = Readonly<{
  stop(): Promise<void>;
  /**
   * Resolve when every projection has applied its stream up to the target: a number is a
   * sequence of the lineage stream; without one, each stream's last sequence at call time.
   */
  waitForCaughtUp(target?: CaughtUpTarget, opts?: { timeoutMs?: number }): Promise<void>;
  /** Every known projection; those not running here show state `idle` and their stored checkpoint. */
  status(): Promise<ProjectionStatus[]>;
  /** Truncate one projection and refold it from sequence 1; resolves once it has caught up. */
  rebuild(
    name: string,
    onProgress?: ((p: Progress) => void) | { onProgress?: (p: Progress) => void },
  ): Promise<void>;
}>;

/**
 * Start every projection (or `only` some) as an independent consumer. Migrates the read store
 * first. The streams must exist (`ensureStreams`); until they do, each projection retries.
 */
export async function startProjector(opts: ProjectorOptions): Promise<Projector> {
  const log = opts.log ?? silentLog;
  await migrate(opts.store);
  const all = opts.projections ?? createProjections({ commands: opts.commands, log });
  const known = new Set(all.map((p) => p.name));
  const unknown = (opts.only ?? []).filter((n) => !known.has(n));
  if (unknown.length > 0) {
    throw new Error(`unknown projection ${unknown.join(', ')}; known: ${[...known].join(', ')}`);
  }
  const selected = opts.only ? all.filter((p) => opts.only!.includes(p.name)) : all;
  // Creating a consumer goes through the stream's leader; while a cluster re-elects after a node
  // died it can take longer than the client's default 5 s, and every retry after a timeout would
  // leave one more consumer the server created anyway.
  const js = jetstream(opts.nc, { timeout: 20_000 });
  const jsm = await jetstreamManager(opts.nc);
  const limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const router = new LineagePartitions(jsm, STREAMS.lineage);
  const sharing = opts.share && !opts.only ? opts.share : undefined;
  const everyPartition = new Set(Array.from({ length: PROJECTION_PARTITIONS }, (_, p) => p));
  const make = (projection: AnyProjection, owned: ReadonlySet<number> = everyPartition) =>
    new ProjectionWorker({
      projection,
      store: opts.store,
      js,
      jsm,
      log,
      limits,
      ...(opts.metrics ? { metrics: opts.metrics } : {}),
      ...(projection.partitioned && projection.stream === 'SLUICE_LINEAGE'
        ? { partitions: { router, owned } }
        : {}),
    });
  const workers = new Map<string, ProjectionWorker>(
    selected.map((p) => [p.name, make(p, sharing ? new Set() : everyPartition)]),
  );
  const leases: PartitionLeases[] = [];
  /** Whole projections this process runs under a lease (sharing only). */
  const leased = new Set<string>();
  if (!sharing) {
    for (const w of workers.values()) await w.start();
  } else {
    const memberId = sharing.memberId ?? uuidv7();
    const partitioned = [...workers.values()].filter((w) => w.partitions !== null);
    const whole = [...workers.values()].filter((w) => w.partitions === null);
    // Partitions acquired in a round start together at its end (one restart of each consumer,
    // not one per partition); a released one is stopped before its lease is given back.
    const desired = new Set<number>();
    let applying: Promise<void> = Promise.resolve();
    const apply = (): Promise<void> =>
      (applying = applying
        .then(() => Promise.all(partitioned.map((w) => w.setPartitions(new Set(desired)))))
        .then(
          () => undefined,
          (err: unknown) => log.error({ err: (err as Error).message }, 'projection partitions not applied'),
        ));
    for (const w of partitioned) await w.start();
    leases.push(
      new PartitionLeases({
        nc: opts.nc,
        group: 'projector',
        partitions: PROJECTION_PARTITIONS,
        memberId,
        ...(sharing.replicas !== undefined ? { replicas: sharing.replicas } : {}),
        log,
        onAcquire: async (p) => void desired.add(p),
        onRelease: async (p) => {
          desired.delete(p);
          await apply();
        },
        onRound: (owned) => {
          void apply();
          sharing.onOwned?.('projector', owned.length);
        },
      }),
    );
    if (whole.length > 0) {
      leases.push(
        new PartitionLeases({
          nc: opts.nc,
          group: 'projector-global',
          partitions: whole.length,
          memberId,
          ...(sharing.replicas !== undefined ? { replicas: sharing.replicas } : {}),
          log,
          onAcquire: async (i) => {
            leased.add(whole[i]!.name);
            await whole[i]!.start();
          },
          onRelease: async (i) => {
            leased.delete(whole[i]!.name);
            await whole[i]!.stop();
          },
          onRound: (owned) => sharing.onOwned?.('projector-global', owned.length),
        }),
      );
    }
    for (const l of leases) await l.start();
    await applying;
  }
  /** Sharing, a whole projection runs in the process holding its lease. */
  const runsHere = (w: ProjectionWorker) => !sharing || w.partitions !== null || leased.has(w.name);
  if (workers.size > 0) {
    log.info({ projections: [...workers.keys()], shared: sharing !== undefined }, 'projector started');
  }

  /** Status of a projection this projector does not run (e.g. `sluice projections status`). */
  async function idleStatus(p: AnyProjection): Promise<ProjectionStatus> {
    const names = checkpointNames(p);
    const [cps, info] = await Promise.all([
      readCheckpoints(opts.store.db, names),
      jsm.streams.info(p.stream).catch(() => undefined),
    ]);
    // A partitioned projection is as far as its slowest partition.
    const stored = [...cps.values()];
    const cp = stored.length > 0 ? stored.reduce((a, b) => (b.position < a.position ? b : a)) : undefined;
    const position = cp?.position ?? 0;
    const last = info?.state.last_seq ?? 0;
    return {
      name: p.name,
      version: p.version,
      stream: p.stream,
      state: 'idle',
      checkpoint: position,
      stream_last_seq: last,
      lag: Math.max(0, last - position),
      rebuilding: false,
      retries: 0,
      skipped_messages: 0,
      last_error:
        cp && cp.version !== p.version ? `stored version ${cp.version}, code version ${p.version}` : null,
    };
  }

  return {
    async stop() {
      // Leases first: each one stops its work before giving the lease back.
      await Promise.all(leases.map((l) => l.stop()));
      await Promise.all([...workers.values()].map((w) => w.stop()));
    },
    async waitForCaughtUp(target, { timeoutMs = 30_000 } = {}) {
      await Promise.all(
        [...workers.values()].filter(runsHere).map(async (w) => {
          const explicit =
            typeof target === 'number'
              ? w.stream === 'SLUICE_LINEAGE'
                ? target
                : undefined
              : target?.[w.stream as StreamName];
          await w.waitFor(explicit ?? (await w.streamLastSeq()), timeoutMs);
        }),
      );
    },
    status: () =>
      Promise.all(
        all.map((p) => {
          const w = workers.get(p.name);
          return w && runsHere(w) ? w.status() : idleStatus(p);
        }),
      ),
    async rebuild(name, onProgress) {
      const cb = typeof onProgress === 'function' ? onProgress : onProgress?.onProgress;
      let w = workers.get(name);
      if (!w) {
        // Not running here (a CLI rebuild next to a running service): run it for the rebuild and
        // keep it until stop(). The service's own worker notices its checkpoint moved and follows.
        const p = all.find((x) => x.name === name);
        if (!p) throw new Error(`unknown projection ${name}; known: ${[...known].join(', ')}`);
        w = make(p);
        workers.set(name, w);
      }
      await w.rebuild(cb);
      // Rebuilt here, but another projector holds its lease: that one runs it from now on.
      if (sharing && w.partitions === null && !leased.has(name)) await w.stop();
    },
  };
}
