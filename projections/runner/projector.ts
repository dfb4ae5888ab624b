import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { createProjections } from '../registry';
import { migrate } from '../store/migrations';
import type { ReadStore } from '../store/open';
import type { AnyProjection, CommandSender, Log, StreamName } from './types';
import { silentLog } from './types';
import { readCheckpoint } from './checkpoints';
import {
  type BatchLimits,
  DEFAULT_LIMITS,
  type Progress,
  type ProjectionStatus,
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
  const js = jetstream(opts.nc);
  const jsm = await jetstreamManager(opts.nc);
  const limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const make = (projection: AnyProjection) =>
    new ProjectionWorker({ projection, store: opts.store, js, jsm, log, limits });
  const workers = new Map<string, ProjectionWorker>(selected.map((p) => [p.name, make(p)]));
  for (const w of workers.values()) await w.start();
  if (workers.size > 0) log.info({ projections: [...workers.keys()] }, 'projector started');

  /** Status of a projection this projector does not run (e.g. `sluice projections status`). */
  async function idleStatus(p: AnyProjection): Promise<ProjectionStatus> {
    const [cp, info] = await Promise.all([
      readCheckpoint(opts.store.db, p.name),
      jsm.streams.info(p.stream).catch(() => undefined),
    ]);
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
      await Promise.all([...workers.values()].map((w) => w.stop()));
    },
    async waitForCaughtUp(target, { timeoutMs = 30_000 } = {}) {
      await Promise.all(
        [...workers.values()].map(async (w) => {
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
    status: () => Promise.all(all.map((p) => workers.get(p.name)?.status() ?? idleStatus(p))),
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
    },
  };
}
