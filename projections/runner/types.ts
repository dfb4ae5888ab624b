import type { Kysely, Transaction } from 'kysely';
import type { LineageCommand } from '../../domain/lineage/decide';
import type { RowChange } from '../../domain/protocol/contracts';
import type { SqlDialect } from '../store/dialect';
import type { ReadStoreDB } from '../store/schema';

export type Tx = Transaction<ReadStoreDB>;
export type Db = Kysely<ReadStoreDB>;

/**
 * What a materializing projection tells the domain about rows it could not write: the fields of
 * the domain's ReportMaterializationFailure command (the sender adds ids, time and policy).
 * One report per (event, journal epoch); `rows` are the failed changes, to be staged.
 */
export type MaterializationFailure = Readonly<{
  /** Stream sequence of the event that failed. */
  source_seq: number;
  event_type: string;
  code: string;
  message: string;
  permanent: boolean;
  rows: readonly RowChange[];
  journal_epoch: string | null;
}>;

/**
 * Sends commands to the lineage's decider (the worker), e.g. over `edge.cmd.*`. Projections use
 * it only after their transaction committed, and never while rebuilding.
 */
export type CommandSender = {
  send(lineageId: string, command: LineageCommand): Promise<void>;
  /**
   * The sender maps this onto the domain's ReportMaterializationFailure (adding ids, time and
   * policy); the resulting MaterializationFailed stages the rows and drives the circuit breaker.
   */
  reportMaterializationFailure?(lineageId: string, info: MaterializationFailure): Promise<void>;
  /**
   * The mirror projection's comparison of a VerifyReported with the mirror at the same position.
   * The sender maps it onto the domain's CompleteVerify command (adding ids and time); the
   * decider records VerifyCompleted and, for divergent buckets, requests a resync of them.
   */
  reportVerifyOutcome?(lineageId: string, info: VerifyOutcomeReport): Promise<void>;
};

export type VerifyOutcomeReport = Readonly<{
  verify_id: string;
  outcome: 'equal' | 'divergent' | 'not_comparable';
  divergent_buckets: readonly number[];
  device_rows: number;
  mirror_rows: number;
  detail?: string;
}>;

/** pino-compatible. */
export type Log = {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
};

export const silentLog: Log = { debug() {}, info() {}, warn() {}, error() {} };

/** Every event a projection sees has a type; lineage events also carry id, data, time and metadata. */
export type ProjectionEvent = Readonly<{ type: string }>;

export type ApplyContext = Readonly<{
  /** Stream sequence of the message holding the event. */
  seq: number;
  /** Index of the event within its message (one message = one decision's events). */
  index: number;
  lineage_id: string;
  occurred_at: string;
  /** True while refolding history (a rebuild): side effects outside the store are suppressed. */
  rebuilding: boolean;
  dialect: SqlDialect;
  /** Run `fn` once the transaction holding this event committed (never while rebuilding). */
  afterCommit(fn: () => Promise<void>): void;
}>;

/** One event of a transaction's batch, with the context `apply` would get for it. */
export type BatchItem<E extends ProjectionEvent = ProjectionEvent> = Readonly<{
  event: E;
  ctx: ApplyContext;
}>;

export type StreamName = 'SLUICE_LINEAGE' | 'SLUICE_REJECTIONS' | 'SLUICE_REGISTRY';

/**
 * A projection folds the events of one stream into its own tables. `apply` runs inside the
 * transaction that also advances the projection's checkpoint, so an event's effects and the
 * checkpoint commit together or not at all. Events whose type is not in `handles` never reach
 * `apply` (new event types are ignored until a projection opts in).
 */
export interface Projection<E extends ProjectionEvent = ProjectionEvent> {
  readonly name: string;
  /** Bump when the fold changes: the runner then rebuilds the projection from sequence 1. */
  readonly version: number;
  readonly stream: StreamName;
  /**
   * Each of its rows belongs to one lineage and nothing it writes depends on another device's
   * events: its work splits by partitions of devices (`runner/partitions.ts`), each with its own
   * checkpoint, shared among projectors. Only for SLUICE_LINEAGE projections.
   */
  readonly partitioned?: boolean;
  readonly handles: readonly E['type'][];
  apply(tx: Tx, event: E, ctx: ApplyContext): Promise<void>;
  /**
   * Optional set-based path: every handled event of one transaction, in stream order, at once.
   * It must leave the store exactly as `apply` over the same events one by one would (same rows,
   * same after-commit actions in the same order); the runner uses it instead of `apply` when
   * present. Row events can then be folded into a few multi-row statements.
   */
  applyBatch?(tx: Tx, items: readonly BatchItem<E>[]): Promise<void>;
  /** Empty every table the projection owns (drop dynamic ones). Runs in the rebuild transaction. */
  truncate(tx: Tx, dialect: SqlDialect): Promise<void>;
  /**
   * Called each time the projection has caught up with its stream after a start or rebuild.
   * `sentUpTo`: events up to this sequence had their after-commit actions suppressed (rebuild)
   * or run by an earlier process; later ones ran theirs live.
   */
  onCaughtUp?(db: Db, info: CaughtUpInfo): Promise<void>;
}

export type CaughtUpInfo = Readonly<{
  sentUpTo: number;
  dialect: SqlDialect;
  /** A partitioned projection's catch-up covers these lineages only (the others are another projector's). */
  owns: (lineageId: string) => Promise<boolean>;
}>;

// Projections are stored heterogeneously by the runner; each one narrows its own event type.
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- variance of apply's parameter
export type AnyProjection = Projection<any>;
