import {
  type ConsumerMessages,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
} from '@nats-io/jetstream';
import type { ReadStore } from '../store/open';
import { BoundedBuffer, backoffMs, cancellableDelay } from './buffer';
import { lockCheckpoint, readCheckpoint, writeCheckpoint } from './checkpoints';
import { type DecodedMessage, decodeMessage } from './decode';
import type { AnyProjection, ApplyContext, BatchItem, Log } from './types';

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

/** The checkpoint row no longer says what this worker last wrote: someone else moved it. */
class CheckpointMoved extends Error {
  constructor(
    readonly version: number | undefined,
    readonly position: number | undefined,
  ) {
    super(`checkpoint moved (version ${version}, position ${position})`);
  }
}

type Deps = Readonly<{
  projection: AnyProjection;
  store: ReadStore;
  js: JetStreamClient;
  jsm: JetStreamManager;
  log: Log;
  limits: BatchLimits;
}>;

/**
 * Runs one projection: an ordered consumer of its stream from checkpoint + 1, messages applied
 * in batches, each batch and the new checkpoint in one transaction. Never throws out of its loop:
 * failures are logged, shown in `status()`, and retried with backoff.
 */
export class ProjectionWorker {
  private position = 0;
  private state: WorkerState = 'starting';
  private stopping = false;
  private loopDone: Promise<void> = Promise.resolve();
  private messages: ConsumerMessages | undefined;
  private buffer: BoundedBuffer<DecodedMessage> | undefined;
  private cancelWait: (() => void) | undefined;
  /** While position < rebuildTarget the projection is refolding history. */
  private rebuildTarget: number | null = null;
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
    const cp = await readCheckpoint(store.db, p.name);
    const last = await this.lastSeqOrUnknown();
    if (!cp) {
      await writeCheckpoint(store.db, p.name, p.version, 0);
      this.position = 0;
    } else if (cp.version !== p.version) {
      log.warn(
        { projection: p.name, stored_version: cp.version, version: p.version },
        'projection version changed: rebuilding it from sequence 1',
      );
      await this.reset();
    } else {
      this.position = cp.position;
    }
    if (last !== undefined && this.position > last) {
      // Never truncate on this evidence alone: a wrong NATS address would wipe the store.
      this.state = 'blocked';
      this.lastError =
        `the read store is at ${this.position} but ${p.stream} ends at ${last}: was the stream recreated? ` +
        `Nothing was changed; run \`sluice projections rebuild ${p.name}\` to refold it from the stream.`;
      log.error({ projection: p.name, position: this.position, last }, this.lastError);
      return;
    }
    // From position 0 every event is history: suppress side effects until caught up.
    this.rebuildTarget = this.position === 0 && last ? last : null;
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
    if (this.position >= seq) return;
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
        if (this.position >= seq) {
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
    return {
      name: this.name,
      version: this.deps.projection.version,
      stream: this.stream,
      state: this.state,
      checkpoint: this.position,
      stream_last_seq: last,
      lag: Math.max(0, last - this.position),
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
      await writeCheckpoint(tx, p.name, p.version, 0);
    });
    this.position = 0;
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
          const back = (err.position ?? 0) < this.position;
          if (!this.onCheckpointMoved(err)) return;
          if (back) {
            // Someone else rebuilt it: what we fold again is history, so no side effects.
            const last = await this.streamLastSeq().catch(() => this.position);
            this.rebuildTarget = last;
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

  /** Someone else wrote the checkpoint (another projector or a rebuild). Resume from theirs. */
  private onCheckpointMoved(err: CheckpointMoved): boolean {
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
      { projection: p.name, ours: this.position, theirs: err.position ?? 0 },
      'checkpoint moved under this projector; resuming from the stored one',
    );
    this.position = err.position ?? 0;
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
    const reader = (async () => {
      try {
        for await (const m of messages) {
          let decoded: DecodedMessage;
          try {
            decoded = decodeMessage(p.stream, m.seq, m.data);
          } catch (err) {
            // A message we cannot read would block the projection forever: skip it, loudly.
            this.skipped++;
            log.error(
              { projection: p.name, seq: m.seq, err: (err as Error).message },
              'undecodable message skipped; its events are missing from this projection',
            );
            decoded = { seq: m.seq, size: m.data.byteLength, lineage_id: '', events: [] };
          }
          if (!(await buffer.push(decoded))) break;
        }
      } finally {
        buffer.close();
      }
    })();
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
    const ours = this.position;
    const position = await store.db.transaction().execute(async (tx) => {
      effects.length = 0;
      const cp =
        (await lockCheckpoint(tx, store.dialect, p.name)) ??
        (ours === 0 ? { version: p.version, position: 0 } : undefined);
      if (!cp || cp.version !== p.version || cp.position < ours) {
        throw new CheckpointMoved(cp?.version, cp?.position);
      }
      let pos = cp.position;
      const items: BatchItem[] = [];
      for (const m of batch) {
        // Exactly once in effect: what the checkpoint covers is already in the store.
        if (m.seq <= pos) continue;
        const rebuilding = this.rebuildTarget !== null && m.seq <= this.rebuildTarget;
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
        pos = m.seq;
      }
      if (p.applyBatch && items.length > 0) await p.applyBatch(tx, items);
      if (pos !== cp.position) await writeCheckpoint(tx, p.name, p.version, pos);
      return pos;
    });
    this.position = Math.max(this.position, position);
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
    const info = { sentUpTo: this.sentUpTo, dialect: store.dialect };
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
