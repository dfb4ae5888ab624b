import { uuidv7 } from 'uuidv7';
import { type LineageCommand, decide } from '../domain/lineage/decide';
import type { EventMetadata, LineageEvent, StoredEvent } from '../domain/lineage/events';
import { type LineageState, evolve, initialState } from '../domain/lineage/state';
import { fold } from '../domain/shared/decider';
import { DomainError } from '../domain/shared/errors';
import { type EventStore, isConcurrencyError } from '../domain/shared/ports';
import { type Metrics, countOutcomes } from '../infra/metrics';
import { SNAPSHOT_SCHEMA, type SnapshotStore } from '../infra/nats/snapshots';

/** A folded lineage, and how many events were folded since its last snapshot. */
type Cached = { state: LineageState; version: number; sinceSnapshot: number };

/** Events between snapshots: a cold load folds about this many events after the snapshot. */
export const SNAPSHOT_EVERY = 200;

/** A bounded LRU of folded lineage states, so hot lineages are not reloaded for every batch. */
export class LineageCache {
  private readonly map = new Map<string, Cached>();
  constructor(private readonly max = 10_000) {}
  get(id: string): Cached | undefined {
    const v = this.map.get(id);
    if (v) {
      this.map.delete(id);
      this.map.set(id, v);
    }
    return v;
  }
  set(id: string, v: Cached): void {
    this.map.delete(id);
    this.map.set(id, v);
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value!);
  }
  delete(id: string): void {
    this.map.delete(id);
  }
}

export type CommandMeta = Readonly<{
  /** Makes a retried decision idempotent (ingress: `<device>:<batch_id>`; API: the idempotency key). */
  decision_id: string;
  correlation_id?: string;
  causation_id?: string;
  actor?: string;
  /** When set, the lineage must belong to this project (operators never reach other projects). */
  project_id?: string;
}>;

/** Every event of one decision gets its id, one time and the decision's causation metadata. */
export function stamp<E extends object>(
  events: readonly E[],
  meta: CommandMeta,
  now: Date,
): (E & { id: string; occurred_at: string; metadata: EventMetadata })[] {
  const at = now.toISOString();
  const metadata: EventMetadata = {
    causation_id: meta.causation_id ?? meta.decision_id,
    correlation_id: meta.correlation_id ?? meta.decision_id,
    ...(meta.actor ? { actor: meta.actor } : {}),
  };
  return events.map((e) => ({ ...e, id: uuidv7(), occurred_at: at, metadata }));
}

export type CommandResult = Readonly<{
  lineage_id: string;
  events: readonly StoredEvent<LineageEvent>[];
  version: number;
  state: LineageState;
}>;

/**
 * Load → decide → append with the version the decision was made on. On a conflict the
 * lineage is reloaded from where the cache stood and the command decided again.
 */
export class LineageCommandHandler {
  private readonly cache: LineageCache;
  private readonly clock: () => Date;
  private readonly metrics?: Metrics;
  private readonly snapshots?: SnapshotStore;
  private readonly log?: DecisionLog;

  constructor(
    private readonly store: EventStore<StoredEvent<LineageEvent>>,
    opts: Readonly<{
      cache?: LineageCache;
      clock?: () => Date;
      metrics?: Metrics;
      snapshots?: SnapshotStore;
      /** Where operator-relevant decisions are logged (registrations, reviews, pauses, deletions). */
      log?: DecisionLog;
    }> = {},
  ) {
    this.cache = opts.cache ?? new LineageCache();
    this.clock = opts.clock ?? (() => new Date());
    this.metrics = opts.metrics;
    this.snapshots = opts.snapshots;
    this.log = opts.log;
  }

  async load(lineageId: string, fresh = false): Promise<Cached> {
    const cached = fresh ? undefined : this.cache.get(lineageId);
    const snap = cached ? undefined : await this.snapshots?.get(lineageId);
    const base: Cached =
      cached ??
      (snap
        ? { state: snap.state, version: snap.version, sinceSnapshot: 0 }
        : { state: initialState(), version: 0, sinceSnapshot: 0 });
    const tail = await this.store.load(lineageId, base.version);
    const next: Cached = {
      state: fold({ evolve, initialState }, tail.events, base.state),
      version: tail.version,
      sinceSnapshot: base.sinceSnapshot + tail.events.length,
    };
    // A decision of this handler may have landed (and been cached) while the tail was read: an
    // older fold must not replace it, or the next decision starts from a stale state.
    const latest = this.cache.get(lineageId);
    if (latest && latest.version > next.version) return latest;
    this.cache.set(lineageId, next);
    return next;
  }

  /** The lineage as this worker knows it (cached, else loaded); no decision. */
  async peek(lineageId: string): Promise<LineageState> {
    return (this.cache.get(lineageId) ?? (await this.load(lineageId))).state;
  }

  /** Snapshots are an optimisation: a failed write only means a longer fold next time. */
  private async maybeSnapshot(lineageId: string, c: Cached): Promise<void> {
    if (!this.snapshots || c.sinceSnapshot < SNAPSHOT_EVERY) return;
    try {
      await this.snapshots.put(lineageId, { schema: SNAPSHOT_SCHEMA, version: c.version, state: c.state });
      this.cache.set(lineageId, { ...c, sinceSnapshot: 0 });
    } catch {
      // keep going without it
    }
  }

  /**
   * Several commands of one lineage decided together and appended as one decision: each is
   * decided on the state the ones before it left, and a command the domain refuses is reported
   * in its place without stopping the others. A retried delivery is safe however the commands are
   * grouped again, because intake dedupes by commit sequence in the state, not by message id.
   */
  async executeAll(
    lineageId: string,
    items: readonly Readonly<{ command: LineageCommand; meta: CommandMeta }>[],
  ): Promise<{ outcomes: Outcome[]; state: LineageState }> {
    let current = this.cache.get(lineageId) ?? (await this.load(lineageId));
    for (let attempt = 0; ; attempt++) {
      let state = current.state;
      const outcomes: Outcome[] = [];
      const all: StoredEvent<LineageEvent>[] = [];
      const now = this.clock();
      for (const { command, meta } of items) {
        try {
          const stored = stamp(decide(command, state), meta, now) as StoredEvent<LineageEvent>[];
          state = stored.reduce<LineageState>(evolve, state);
          all.push(...stored);
          outcomes.push({ ok: true, events: stored });
        } catch (err) {
          if (!(err instanceof DomainError)) throw err;
          outcomes.push({ ok: false, error: err });
        }
      }
      if (all.length === 0) return { outcomes, state };
      const decisionId = `${items[0]!.meta.decision_id}+${items.length - 1}`;
      try {
        const r = await this.store.append(lineageId, all, current.version, decisionId);
        if (r.duplicate) {
          const reloaded = await this.load(lineageId, true);
          return {
            outcomes: outcomes.map((o) => (o.ok ? { ok: true, events: [] } : o)),
            state: reloaded.state,
          };
        }
        const next: Cached = { state, version: r.version, sinceSnapshot: current.sinceSnapshot + all.length };
        this.cache.set(lineageId, next);
        await this.maybeSnapshot(lineageId, next);
        items.forEach(({ command }, i) => {
          if (outcomes[i]!.ok) this.metrics?.decisions.inc({ command: command.type });
        });
        countOutcomes(this.metrics, all);
        logDecision(this.log, lineageId, items[0]!.command.type, all, state);
        return { outcomes, state };
      } catch (err) {
        if (!isConcurrencyError(err) || attempt >= 20) throw err;
        this.metrics?.conflicts.inc();
        current = await this.load(lineageId);
      }
    }
  }

  async execute(lineageId: string, command: LineageCommand, meta: CommandMeta): Promise<CommandResult> {
    let current = this.cache.get(lineageId) ?? (await this.load(lineageId));
    for (let attempt = 0; ; attempt++) {
      const { state } = current;
      if (meta.project_id && state.status === 'registered' && state.project_id !== meta.project_id) {
        throw new DomainError('not_found', 'lineage not found');
      }
      const events = decide(command, state);
      if (events.length === 0) return { lineage_id: lineageId, events: [], version: current.version, state };
      const stored = stamp(events, meta, this.clock()) as StoredEvent<LineageEvent>[];
      try {
        const r = await this.store.append(lineageId, stored, current.version, meta.decision_id);
        if (r.duplicate) {
          // The same decision was appended before (its ack was lost): re-read what is durable.
          const reloaded = await this.load(lineageId, true);
          return { lineage_id: lineageId, events: [], version: reloaded.version, state: reloaded.state };
        }
        const next: Cached = {
          state: stored.reduce<LineageState>(evolve, state),
          version: r.version,
          sinceSnapshot: current.sinceSnapshot + stored.length,
        };
        this.cache.set(lineageId, next);
        await this.maybeSnapshot(lineageId, next);
        this.metrics?.decisions.inc({ command: command.type });
        countOutcomes(this.metrics, stored);
        logDecision(this.log, lineageId, command.type, stored, next.state);
        return { lineage_id: lineageId, events: stored, version: r.version, state: next.state };
      } catch (err) {
        if (!isConcurrencyError(err) || attempt >= 20) throw err;
        this.metrics?.conflicts.inc();
        current = await this.load(lineageId);
      }
    }
  }
}

/** One command's part of `executeAll`: its stored events, or the domain's refusal. */
export type Outcome =
  | Readonly<{ ok: true; events: readonly StoredEvent<LineageEvent>[] }>
  | Readonly<{ ok: false; error: DomainError }>;

/** The slice of a logger decisions are written to (pino's `info`). */
export type DecisionLog = Readonly<{ info: (obj: Record<string, unknown>, msg: string) => void }>;

/**
 * Events an operator looks for in the cloud log. Row and telemetry intake is not among them: it is
 * counted in metrics and readable per lineage, and a line per batch would drown the rest.
 */
const LOGGED = new Set<string>([
  'LineageRegistered',
  'SchemaReviewQueued',
  'SchemaReviewClaimed',
  'SchemaReviewApproved',
  'SchemaReviewRejected',
  'SchemaReviewReopened',
  'SchemaVersionAdopted',
  'SchemaApprovedByRegistry',
  'LineagePaused',
  'LineageResumed',
  'MaterializationFailed',
  'MaterializationReset',
  'LineageDeleted',
  'VerifyCompleted',
  'ResyncRequested',
  'RowsRefused',
]);

function logDecision(
  log: DecisionLog | undefined,
  lineageId: string,
  command: string,
  events: readonly StoredEvent<LineageEvent>[],
  state: LineageState,
): void {
  if (!log) return;
  const shown = events.filter((e) => LOGGED.has(e.type));
  if (shown.length === 0) return;
  const where =
    state.status === 'registered'
      ? { project_id: state.project_id, device: state.device_name, table: state.source_table }
      : {};
  for (const e of shown)
    log.info(
      { event: e.type, lineage_id: lineageId, command, ...where, data: summarize(e) },
      `lineage ${e.type}`,
    );
}

/** The fields of an event worth a log line (reasons, review ids, counts), never row values. */
function summarize(e: StoredEvent<LineageEvent>): Record<string, unknown> {
  const d = e.data as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const k of [
    'review_id',
    'schema_hash',
    'classification',
    'reason',
    'actor',
    'claimed_by',
    'outcome',
    'resync_id',
    'code',
    'consecutive_failures',
    'previous_failures',
  ])
    if (d[k] !== undefined && typeof d[k] !== 'object') out[k] = d[k];
  if (Array.isArray(d.rows)) out.rows = d.rows.length;
  return out;
}
