import {
  type ConsumerMessages,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
} from '@nats-io/jetstream';
import type { ReadStore } from '../store/open';
import { BoundedBuffer, backoffMs, cancellableDelay } from './buffer';
import {
  checkpointNames,
  ensurePartitionCheckpoints,
  lockCheckpoints,
  partitionCheckpoint,
  readCheckpoints,
  writeCheckpoint,
  writeCheckpoints,
} from './checkpoints';
import { type DecodedMessage, decodeMessage } from './decode';
import { type LineagePartitions, PROJECTION_PARTITIONS } from './partitions';
import type { AnyProjection, ApplyContext, BatchItem, CaughtUpInfo, Log } from './types';

export type BatchLimits = Readonly<{ maxMessages: number; maxBytes: number }>;
export const DEFAULT_LIMITS: BatchLimits = { maxMessages: 500, maxBytes: 4 * 1024 * 1024 };
/** Bytes one pull request may bring (above nats-server's largest max_payload, 64 MiB is its client limit). */
const PULL_MAX_BYTES = 16 * 1024 * 1024;

/** How long one pull waits on the server; see `consume`. */
const PULL_EXPIRES_MS = 5_000;
/** `idle`: known but not run by this projector (its status comes from the stored checkpoint). */
export type WorkerState =
  | 'idle'
  | 'starting'
  | 'catching_up'
  | 'live'
  | 'retrying'
  | 'rebuilding'
  | 'stopped'
  | 'superseded'
  | 'blocked';

export type Progress = Readonly<{ name: string; position: number; target: number }>;

export type ProjectionStatus = Readonly<{
  name: string;
  version: number;
  stream: string;
  state: WorkerState;
  checkpoint: number;
  stream_last_seq: number;
  lag: number;
  rebuilding: boolean;
  retries: number;
  skipped_messages: number;
  last_error: string | null;
}>;

/** A checkpoint row no longer says what this worker last wrote: someone else moved it. */
class CheckpointMoved extends Error {
  constructor(
    readonly checkpoint: string,
    readonly version: number | undefined,
    readonly position: number | undefined,
  ) {
    super(`checkpoint ${checkpoint} moved (version ${version}, position ${position})`);
  }
}

type Deps = Readonly<{
  projection: AnyProjection;
  store: ReadStore;
  js: JetStreamClient;
  jsm: JetStreamManager;
  log: Log;
  limits: BatchLimits;
  /**
   * For a partitioned projection: tells a message's partition, and the partitions this worker
   * starts with (all of them unless a projector shares them through leases).
   */
  partitions?: Readonly<{ router: LineagePartitions; owned: ReadonlySet<number> }>;
  metrics?: ProjectorMetrics;
}>;

/** What a projector counts (the `projector` role exports them to Prometheus). */
export type ProjectorMetrics = Readonly<{
  /** Messages a projection applied here (a partitioned one: of the partitions it owns). */
  applied(projection: string, messages: number): void;
  /** A checkpoint moved under this projector: another one applied the same messages first. */
  conflict(projection: string): void;
}>;

/**
 * Runs one projection: an ordered consumer of its stream from checkpoint + 1, messages applied
 * in batches, each batch and the new checkpoint in one transaction. Never throws out of its loop:
 * failures are logged, shown in `status()`, and retried with backoff.
 *
 * A partitioned projection has a checkpoint per partition and runs only the partitions it owns:
 * the consumer starts after the lowest of their checkpoints, messages of other partitions are
 * skipped unread (their partition comes from the subject), and each batch advances every owned
 * checkpoint past it.
 */
export class ProjectionWorker {
  /** The lowest owned checkpoint: every message up to here is applied or not ours. */
  private position = 0;
  /** Checkpoint name → position, for what this worker owns (the bare name when unpartitioned). */
  private positions = new Map<string, number>();
  /** Owned partitions; null for a projection that is not partitioned. */
  private owned: ReadonlySet<number> | null;
  private state: WorkerState = 'starting';
  private stopping = false;
  private loopDone: Promise<void> = Promise.resolve();
  private messages: ConsumerMessages | undefined;
  private buffer: BoundedBuffer<DecodedMessage> | undefined;
  private cancelWait: (() => void) | undefined;
  /** While position < rebuildTarget the projection is refolding history. */
  private rebuildTarget: number | null = null;
  /** The checkpoints being refolded from 0 (null: all); the others' new events are live. */
  private historyKeys: ReadonlySet<string> | null = null;
  /** Reaching it after a start or rebuild calls the projection's onCaughtUp. */
  private catchUpTarget: number | null = null;
  /** Events up to here had their after-commit actions suppressed or run by an earlier process. */
  private sentUpTo = 0;
  private lastError: string | null = null;
  private retries = 0;
  private skipped = 0;
  private effects: Promise<void> = Promise.resolve();
  private readonly listeners = new Set<() => void>();
  private readonly handles: ReadonlySet<string>;

  constructor(private readonly deps: Deps) {
    this.handles = new Set(deps.projection.handles);
    this.owned = deps.partitions ? new Set(deps.partitions.owned) : null;
  }

  /** Partitions this worker runs; null when the projection is not partitioned. */
  get partitions(): number[] | null {
    return this.owned ? [...this.owned].sort((a, b) => a - b) : null;
  }

  /** The checkpoints this worker advances. */
  private keys(): string[] {
    const name = this.deps.projection.name;
    return this.owned ? this.partitions!.map((p) => partitionCheckpoint(name, p)) : [name];
  }

  /** Every checkpoint of the projection, owned here or not (a reset writes them all). */
  private allKeys(): string[] {
    return checkpointNames({ name: this.deps.projection.name, partitioned: this.owned !== null });
  }

  /** The checkpoint a message advances here; undefined when another projector owns its partition. */
  private keyOf(m: DecodedMessage): string | undefined {
    if (!this.owned) return this.deps.projection.name;
    return m.partition !== undefined && this.owned.has(m.partition)
      ? partitionCheckpoint(this.deps.projection.name, m.partition)
      : undefined;
  }

  private setPositions(positions: Map<string, number>): void {
    this.positions = positions;
    this.position = positions.size > 0 ? Math.min(...positions.values()) : 0;
    this.notify();
  }

  /**
   * Run these partitions from now on (a projector's leases changed): the loop stops, and starts
   * again from the lowest checkpoint of the new set. Resolves once the released ones are no longer
   * being written.
   */
  async setPartitions(owned: ReadonlySet<number>): Promise<void> {
    if (!this.owned) throw new Error(`projection ${this.name} is not partitioned`);
    const same = owned.size === this.owned.size && [...owned].every((p) => this.owned!.has(p));
    if (same && this.state !== 'stopped') return;
    await this.stopLoop();
    this.owned = new Set(owned);
    await this.start();
  }

  get name(): string {
    return this.deps.projection.name;
  }
  get stream(): string {
    return this.deps.projection.stream;
  }
  get checkpoint(): number {
    return this.position;
  }

  async streamLastSeq(): Promise<number> {
    const info = await this.deps.jsm.streams.info(this.stream);
    return info.state.last_seq;
  }

  /** The stream's last sequence; 0 if it does not exist; undefined if NATS does not answer. */
  private async lastSeqOrUnknown(): Promise<number | undefined> {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        return await this.streamLastSeq();
      } catch (err) {
        if (
          err instanceof Error &&
          (err.name === 'StreamNotFoundError' || /stream not found/i.test(err.message))
        ) {
          return 0;
        }
        await this.sleep(backoffMs(attempt));
      }
    }
    return undefined;
  }

  /** Load the checkpoint, rebuild when the code's version differs, then consume. */
  async start(): Promise<void> {
    const { projection: p, store, log } = this.deps;
    await this.stopLoop();
    if (this.owned) await ensurePartitionCheckpoints(store.db, p.name, p.version, PROJECTION_PARTITIONS);
    const keys = this.keys();
    if (keys.length === 0) {
      // A partitioned projection whose partitions are all run by other projectors (for now).
      this.setPositions(new Map());
      this.state = 'idle';
      this.notify();
      return;
    }
    const cps = await readCheckpoints(store.db, keys);
    const last = await this.lastSeqOrUnknown();
    const changed = [...cps.values()].find((cp) => cp.version !== p.version);
    if (cps.size === 0 && !this.owned) {
      await writeCheckpoint(store.db, p.name, p.version, 0);
      this.setPositions(new Map([[p.name, 0]]));
    } else if (changed) {
      log.warn(
        { projection: p.name, stored_version: changed.version, version: p.version },
        'projection version changed: rebuilding it from sequence 1',
      );
      await this.reset();
    } else if (cps.size < keys.length) {
      this.state = 'blocked';
      this.lastError =
        `checkpoints of ${p.name} disappeared while its tables were kept; ` +
        `run \`sluice projections rebuild ${p.name}\``;
      log.error({ projection: p.name }, this.lastError);
      this.notify();
      return;
    } else {
      this.setPositions(new Map([...cps].map(([k, cp]) => [k, cp.position])));
    }
    const highest = Math.max(...this.positions.values());
    if (last !== undefined && highest > last) {
      // Never truncate on this evidence alone: a wrong NATS address would wipe the store.
      this.state = 'blocked';
      this.lastError =
        `the read store is at ${highest} but ${p.stream} ends at ${last}: was the stream recreated? ` +
        `Nothing was changed; run \`sluice projections rebuild ${p.name}\` to refold it from the stream.`;
      log.error({ projection: p.name, position: highest, last }, this.lastError);
      this.notify();
      return;
    }
    // From position 0 every event is history: suppress side effects until caught up.
    this.rebuildTarget = this.position === 0 && last ? last : null;
    this.historyKeys = new Set([...this.positions].filter(([, pos]) => pos === 0).map(([k]) => k));
    this.catchUpTarget = last ?? null;
    this.sentUpTo = Math.max(this.position, this.rebuildTarget ?? 0);
    this.startLoop();
    this.checkCaughtUp();
  }

  async stop(): Promise<void> {
    await this.stopLoop();
    this.state = 'stopped';
    this.notify();
    await this.effects;
  }

  /** Truncate the projection's tables and refold from sequence 1; resolves once caught up. */
  async rebuild(onProgress?: (p: Progress) => void): Promise<void> {
    await this.stopLoop();
    await this.reset();
    this.lastError = null;
    const target = (await this.lastSeqOrUnknown()) ?? 0;
    this.rebuildTarget = target;
    this.historyKeys = null;
    this.catchUpTarget = target;
    this.sentUpTo = target;
    onProgress?.({ name: this.name, position: 0, target });
    const progress = () =>
      onProgress?.({ name: this.name, position: Math.min(this.position, target), target });
    this.listeners.add(progress);
    try {
      this.startLoop();
      this.checkCaughtUp();
      await this.waitFor(target, Number.POSITIVE_INFINITY);
    } finally {
      this.listeners.delete(progress);
    }
  }

  /** Resolve when the checkpoint reaches `seq` (the stream's current last sequence by default). */
  async waitFor(seq: number, timeoutMs: number): Promise<void> {
    if (this.state === 'blocked') throw new Error(`projection ${this.name} is blocked: ${this.lastError}`);
    if (this.position >= seq || this.owned?.size === 0) return;
    await new Promise<void>((resolve, reject) => {
      const timer = Number.isFinite(timeoutMs)
        ? setTimeout(() => {
            this.listeners.delete(check);
            reject(
              new Error(
                `projection ${this.name} is at ${this.position}, not ${seq}, after ${timeoutMs} ms` +
                  (this.lastError ? ` (last error: ${this.lastError})` : ''),
              ),
            );
          }, timeoutMs)
        : undefined;
      const check = () => {
        if (this.position >= seq || this.owned?.size === 0) {
          if (timer) clearTimeout(timer);
          this.listeners.delete(check);
          resolve();
        } else if (this.state === 'superseded' || this.state === 'stopped' || this.state === 'blocked') {
          if (timer) clearTimeout(timer);
          this.listeners.delete(check);
          reject(new Error(`projection ${this.name} stopped: ${this.lastError}`));
        }
      };
      this.listeners.add(check);
    });
  }

  async status(): Promise<ProjectionStatus> {
    const last = await this.streamLastSeq().catch(() => this.position);
    // Owning no partition, it reports where the projection as a whole is (its lowest checkpoint).
    const checkpoint =
      this.owned?.size === 0
        ? Math.min(
            ...[...(await readCheckpoints(this.deps.store.db, this.allKeys())).values()].map(
              (c) => c.position,
            ),
          )
        : this.position;
    return {
      name: this.name,
      version: this.deps.projection.version,
      stream: this.stream,
      state: this.state,
      checkpoint,
      stream_last_seq: last,
      lag: Math.max(0, last - checkpoint),
      rebuilding: this.rebuildTarget !== null,
      retries: this.retries,
      skipped_messages: this.skipped,
      last_error: this.lastError,
    };
  }

  // ------------------------------------------------------------------ internals

  /** Empty the projection and its checkpoint in one transaction. */
  private async reset(): Promise<void> {
    const { projection: p, store } = this.deps;
    await store.db.transaction().execute(async (tx) => {
      await p.truncate(tx, store.dialect);
      await writeCheckpoints(tx, p.version, new Map(this.allKeys().map((k) => [k, 0])));
    });
    this.setPositions(new Map(this.keys().map((k) => [k, 0])));
    this.notify();
  }

  private startLoop(): void {
    this.stopping = false;
    this.state = this.rebuildTarget !== null ? 'rebuilding' : 'catching_up';
    this.loopDone = this.loop();
  }

  private async stopLoop(): Promise<void> {
    this.stopping = true;
    this.cancelWait?.();
    this.buffer?.close();
    this.messages?.stop();
    await this.loopDone;
  }

  private async sleep(ms: number): Promise<void> {
    const d = cancellableDelay(ms);
    this.cancelWait = d.cancel;
    await d.promise;
    this.cancelWait = undefined;
  }

  private async loop(): Promise<void> {
    let attempt = 0;
    while (!this.stopping) {
      try {
        const progressed = await this.consume();
        if (this.stopping) break;
        // The consumer ended on its own (e.g. it gave up recreating itself): start a new one,
        // from the checkpoint, without spinning.
        this.deps.log.warn(
          { projection: this.name, position: this.position },
          'consumer ended; starting a new one',
        );
        attempt = progressed ? 0 : attempt + 1;
        await this.sleep(backoffMs(attempt));
      } catch (err) {
        if (this.stopping) break;
        if (err instanceof CheckpointMoved) {
          this.deps.metrics?.conflict(this.name);
          const back = (err.position ?? 0) < (this.positions.get(err.checkpoint) ?? 0);
          if (!(await this.onCheckpointMoved(err))) return;
          if (back) {
            // Someone else rebuilt it: what we fold again is history, so no side effects.
            const last = await this.streamLastSeq().catch(() => this.position);
            this.rebuildTarget = last;
            this.historyKeys = null;
            this.catchUpTarget = last;
            this.sentUpTo = last;
            this.state = 'rebuilding';
          }
          continue;
        }
        this.noteError(err, 'consumer failed; reconnecting');
        await this.sleep(backoffMs(attempt++));
      }
    }
  }

  /** Someone else wrote a checkpoint (another projector or a rebuild). Resume from theirs. */
  private async onCheckpointMoved(err: CheckpointMoved): Promise<boolean> {
    const { projection: p, log } = this.deps;
    if (err.version === undefined) {
      // Its tables may still hold everything: refolding from 0 onto them would double it.
      this.state = 'blocked';
      this.lastError =
        `the checkpoint row of ${p.name} disappeared while its tables were kept; ` +
        `run \`sluice projections rebuild ${p.name}\``;
      log.error({ projection: p.name, position: this.position }, this.lastError);
      this.notify();
      return false;
    }
    if (err.version !== p.version) {
      this.state = 'superseded';
      this.lastError = `projection ${p.name} is now at version ${err.version} (this process runs ${p.version}); stopped here`;
      log.error({ projection: p.name, stored_version: err.version, version: p.version }, this.lastError);
      this.notify();
      return false;
    }
    log.warn(
      {
        projection: p.name,
        checkpoint: err.checkpoint,
        ours: this.positions.get(err.checkpoint),
        theirs: err.position ?? 0,
      },
      'checkpoint moved under this projector; resuming from the stored one',
    );
    const stored = await readCheckpoints(this.deps.store.db, this.keys());
    this.setPositions(new Map(this.keys().map((k) => [k, stored.get(k)?.position ?? 0])));
    return true;
  }

  /** Consume until stopped or the consumer ends; true when at least one batch was applied. */
  private async consume(): Promise<boolean> {
    const { projection: p, js, limits, log } = this.deps;
    const consumer = await js.consumers.get(p.stream, {
      opt_start_seq: this.position + 1,
      deliver_policy: DeliverPolicy.StartSequence,
    });
    // Bounded in bytes, not messages: pulling 1,000 messages of a few hundred KiB each (a rebuild
    // of large row batches) overran the server's per-client pending limit, and the consumer
    // stalled. The bound stays above the largest message NATS accepts (max_payload), or that one
    // would never come. Short pulls: after a nats-server restart the ordered consumer is rebuilt
    // once two idle heartbeats (half of `expires` each) go missing; with the default 30 s the read
    // side stood still for ~40 s after every restart. The local buffer is bounded in bytes too.
    const messages = await consumer.consume({ max_bytes: PULL_MAX_BYTES, expires: PULL_EXPIRES_MS });
    this.messages = messages;
    const buffer = new BoundedBuffer<DecodedMessage>(limits.maxMessages * 2, limits.maxBytes * 2);
    this.buffer = buffer;
    if (this.stopping) buffer.close();
    const router = this.deps.partitions?.router;
    const reader = (async () => {
      try {
        for await (const m of messages) {
          let decoded: DecodedMessage;
          const partition = router ? await this.partitionOf(router, m.subject, m.data) : undefined;
          if (partition !== undefined && !this.owned!.has(partition)) {
            // Another projector's: only its sequence matters here (it moves our checkpoints on).
            if (!(await buffer.push({ seq: m.seq, size: 0, lineage_id: '', events: [], partition }))) break;
            continue;
          }
          try {
            decoded = { ...decodeMessage(p.stream, m.seq, m.data), partition };
          } catch (err) {
            // A message we cannot read would block the projection forever: skip it, loudly.
            this.skipped++;
            log.error(
              { projection: p.name, seq: m.seq, err: (err as Error).message },
              'undecodable message skipped; its events are missing from this projection',
            );
            decoded = { seq: m.seq, size: m.data.byteLength, lineage_id: '', events: [], partition };
          }
          if (!(await buffer.push(decoded))) break;
        }
      } finally {
        buffer.close();
      }
    })();
    // A failed read ends this consumer (the loop starts a new one from the checkpoint). Handled at
    // once: the loop may be waiting on the buffer when it fails, and an unhandled rejection would
    // end the process.
    reader.catch((err: unknown) => {
      if (!this.stopping) this.noteError(err, 'reading the stream failed; starting a new consumer');
    });
    let progressed = false;
    try {
      for (;;) {
        const batch = await buffer.take(limits.maxMessages, limits.maxBytes);
        if (batch === null || this.stopping) break;
        const applied = await this.applyWithRetry(batch);
        if (!applied) break;
        progressed = true;
      }
      return progressed;
    } finally {
      messages.stop();
      buffer.close();
      await reader.catch(() => undefined);
      this.messages = undefined;
    }
  }

  private async partitionOf(router: LineagePartitions, subject: string, data: Uint8Array): Promise<number> {
    try {
      return await router.of(subject, data);
    } catch (err) {
      // The consumer ends and a new one starts from the checkpoint, after a backoff.
      this.noteError(err, 'could not tell the partition of a message');
      throw err;
    }
  }

  /** Apply a batch, retrying with backoff until it commits. False when stopping. */
  private async applyWithRetry(batch: readonly DecodedMessage[]): Promise<boolean> {
    let attempt = 0;
    while (!this.stopping) {
      try {
        await this.applyBatch(batch);
        if (attempt > 0) this.deps.log.info({ projection: this.name }, 'projection recovered');
        this.lastError = null;
        return true;
      } catch (err) {
        if (err instanceof CheckpointMoved) throw err;
        this.state = 'retrying';
        this.retries++;
        this.noteError(err, 'applying events failed; the batch is rolled back and retried');
        await this.sleep(backoffMs(attempt++));
      }
    }
    return false;
  }

  private async applyBatch(batch: readonly DecodedMessage[]): Promise<void> {
    const { projection: p, store } = this.deps;
    const effects: (() => Promise<void>)[] = [];
    const ours = this.positions;
    const keys = [...ours.keys()];
    let applied = 0;
    const positions = await store.db.transaction().execute(async (tx) => {
      effects.length = 0;
      const cps = await lockCheckpoints(tx, store.dialect, keys);
      const stored = new Map<string, number>();
      for (const key of keys) {
        const mine = ours.get(key) ?? 0;
        const cp =
          cps.get(key) ?? (!this.owned && mine === 0 ? { version: p.version, position: 0 } : undefined);
        if (!cp || cp.version !== p.version || cp.position < mine) {
          throw new CheckpointMoved(key, cp?.version, cp?.position);
        }
        stored.set(key, cp.position);
      }
      const items: BatchItem[] = [];
      applied = 0;
      for (const m of batch) {
        const key = this.keyOf(m);
        // Exactly once in effect: what the checkpoint covers is already in the store.
        if (key === undefined || m.seq <= stored.get(key)!) continue;
        applied++;
        const rebuilding =
          this.rebuildTarget !== null && m.seq <= this.rebuildTarget && (this.historyKeys?.has(key) ?? true);
        for (let index = 0; index < m.events.length; index++) {
          const event = m.events[index]!;
          if (!this.handles.has(event.type)) continue;
          const ctx: ApplyContext = {
            seq: m.seq,
            index,
            lineage_id: m.lineage_id,
            occurred_at: event.occurred_at ?? '',
            rebuilding,
            dialect: store.dialect,
            afterCommit: (fn) => {
              if (!rebuilding) effects.push(fn);
            },
          };
          if (p.applyBatch) items.push({ event, ctx });
          else await p.apply(tx, event, ctx);
        }
      }
      if (p.applyBatch && items.length > 0) await p.applyBatch(tx, items);
      // Every message up to the batch's last is now applied or another partition's.
      const last = batch.at(-1)?.seq ?? 0;
      const next = new Map([...stored].map(([k, pos]) => [k, Math.max(pos, last)]));
      await writeCheckpoints(tx, p.version, new Map([...next].filter(([k, pos]) => pos !== stored.get(k))));
      return next;
    });
    this.setPositions(new Map(keys.map((k) => [k, Math.max(ours.get(k) ?? 0, positions.get(k) ?? 0)])));
    if (applied > 0) this.deps.metrics?.applied(p.name, applied);
    if (this.state === 'retrying') {
      this.state =
        this.rebuildTarget !== null ? 'rebuilding' : this.catchUpTarget !== null ? 'catching_up' : 'live';
    }
    for (const fn of effects) this.enqueueEffect(fn);
    this.checkCaughtUp();
    this.notify();
  }

  private checkCaughtUp(): void {
    if (this.catchUpTarget === null || this.position < this.catchUpTarget) return;
    this.catchUpTarget = null;
    const wasRebuilding = this.rebuildTarget !== null;
    this.rebuildTarget = null;
    if (this.state !== 'superseded' && this.state !== 'stopped') this.state = 'live';
    const { projection: p, store, log } = this.deps;
    if (wasRebuilding) log.info({ projection: p.name, position: this.position }, 'projection rebuilt');
    const router = this.deps.partitions?.router;
    const owned = this.owned;
    const info: CaughtUpInfo = {
      sentUpTo: this.sentUpTo,
      dialect: store.dialect,
      owns: async (lineageId) => !router || !owned || owned.has(await router.ofLineage(lineageId)),
    };
    if (p.onCaughtUp) this.enqueueEffect(() => p.onCaughtUp!(store.db, info));
  }

  /** Side effects run in order after their commit; a failure is logged, never retried here. */
  private enqueueEffect(fn: () => Promise<void>): void {
    this.effects = this.effects.then(fn).catch((err: unknown) => {
      this.deps.log.warn(
        { projection: this.name, err: (err as Error)?.message },
        'after-commit action failed',
      );
    });
  }

  private noteError(err: unknown, msg: string): void {
    this.lastError = err instanceof Error ? err.message : String(err);
    this.deps.log.error({ projection: this.name, err: this.lastError, position: this.position }, msg);
    this.notify();
  }

  private notify(): void {
    for (const l of [...this.listeners]) l();
  }
}
