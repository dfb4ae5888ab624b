import { type LineageCommand, decide } from '../domain/lineage/decide';
import type { LineageEvent, StoredEvent } from '../domain/lineage/events';
import { type LineageState, evolve, initialState } from '../domain/lineage/state';
import { DomainError } from '../domain/shared/errors';
import type { EventStore } from '../domain/shared/ports';
import { type Metrics, countOutcomes } from '../infra/metrics';
import { SNAPSHOT_SCHEMA, type SnapshotStore, currentSnapshot } from '../infra/nats/snapshots';
import {
  AggregateHandler,
  type CommandMeta,
  type ConflictRetry,
  type Folded,
  StateCache,
  assertInProject,
  stamp,
} from './aggregate-handler';

/** Events between snapshots: a cold load folds about this many events after the snapshot. */
export const SNAPSHOT_EVERY = 200;

/** A bounded LRU of folded lineage states, so hot lineages are not reloaded for every batch. */
export class LineageCache extends StateCache<LineageState> {}

export type CommandResult = Readonly<{
  lineage_id: string;
  events: readonly StoredEvent<LineageEvent>[];
  version: number;
  state: LineageState;
}>;

export type LineageCommandHandlerOptions = Readonly<{
  cache?: LineageCache;
  /** The clock of decisions: what a command's `now` and its events' `occurred_at` are read from. */
  clock?: () => Date;
  metrics?: Metrics;
  snapshots?: SnapshotStore;
  /** Where operator-relevant decisions are logged (registrations, reviews, pauses, deletions). */
  log?: DecisionLog;
  retry?: ConflictRetry;
}>;

/**
 * Lineage decisions (domain/lineage/decide.ts) through the aggregate handler: load (from a
 * snapshot) → decide → append, re-decided on a conflict; then metrics and the decision log.
 */
export class LineageCommandHandler {
  /** The one clock of this handler's decisions; whoever builds a command with a `now` reads it. */
  readonly clock: () => Date;
  private readonly core: AggregateHandler<LineageState, StoredEvent<LineageEvent>>;
  private readonly metrics?: Metrics;
  private readonly log?: DecisionLog;

  constructor(store: EventStore<StoredEvent<LineageEvent>>, opts: LineageCommandHandlerOptions = {}) {
    this.clock = opts.clock ?? (() => new Date());
    this.metrics = opts.metrics;
    this.log = opts.log;
    const { snapshots } = opts;
    this.core = new AggregateHandler({
      store,
      evolve,
      initialState,
      cache: opts.cache ?? new LineageCache(),
      ...(snapshots
        ? {
            snapshots: {
              get: async (id) => currentSnapshot(await snapshots.get(id)),
              put: (id, s) => snapshots.put(id, { schema: SNAPSHOT_SCHEMA, ...s }),
            },
            snapshotEvery: SNAPSHOT_EVERY,
          }
        : {}),
      metrics: opts.metrics,
      retry: opts.retry,
    });
  }

  load(lineageId: string, fresh = false): Promise<Folded<LineageState>> {
    return this.core.load(lineageId, fresh);
  }

  /** The lineage as this worker knows it (cached, else loaded); no decision. */
  async peek(lineageId: string): Promise<LineageState> {
    return (this.core.cached(lineageId) ?? (await this.core.load(lineageId))).state;
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
    const at = this.clock().toISOString();
    const r = await this.core.decide(lineageId, (start) => {
      let state = start;
      const outcomes: Outcome[] = [];
      const events: StoredEvent<LineageEvent>[] = [];
      for (const { command, meta } of items) {
        try {
          const stored = stamp(decide(command, state), meta, meta.now ?? at);
          state = stored.reduce<LineageState>(evolve, state);
          events.push(...stored);
          outcomes.push({ ok: true, events: stored });
        } catch (err) {
          if (!(err instanceof DomainError)) throw err;
          outcomes.push({ ok: false, error: err });
        }
      }
      return {
        events,
        decision_id: `${items[0]!.meta.decision_id}+${items.length - 1}`,
        result: outcomes,
        state,
      };
    });
    if (r.duplicate) {
      return { outcomes: r.result.map((o) => (o.ok ? { ok: true, events: [] } : o)), state: r.state };
    }
    if (r.events.length > 0) {
      items.forEach(({ command }, i) => {
        if (r.result[i]!.ok) this.metrics?.decisions.inc({ command: command.type });
      });
      countOutcomes(this.metrics, r.events);
      logDecision(this.log, lineageId, items[0]!.command.type, r.events, r.state);
    }
    return { outcomes: r.result, state: r.state };
  }

  async execute(lineageId: string, command: LineageCommand, meta: CommandMeta): Promise<CommandResult> {
    const at = meta.now ?? this.clock().toISOString();
    const r = await this.core.decide(lineageId, (state) => {
      assertInProject(state, meta, 'lineage');
      return { events: stamp(decide(command, state), meta, at), decision_id: meta.decision_id, result: null };
    });
    if (r.events.length > 0) {
      this.metrics?.decisions.inc({ command: command.type });
      countOutcomes(this.metrics, r.events);
      logDecision(this.log, lineageId, command.type, r.events, r.state);
    }
    return { lineage_id: lineageId, events: r.events, version: r.version, state: r.state };
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
