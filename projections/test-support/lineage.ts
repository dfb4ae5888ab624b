import { uuidv7 } from 'uuidv7';
import { lineageDecider, type LineageCommand } from '../../domain/lineage/decide';
import type {
  Classification,
  ColumnBinding,
  LineageEvent,
  PauseReason,
  StagingReason,
  StoredEvent,
  TelemetryRow,
} from '../../domain/lineage/events';
import type { LineageState } from '../../domain/lineage/state';
import type { RowBatch, RowChange, WireValue } from '../../domain/protocol/contracts';
import { type SchemaColumns, schemaHash } from '../../domain/protocol/fingerprint';
import { DEFAULT_POLICY } from '../../domain/policy/policy';
import { fold } from '../../domain/shared/decider';
import type { MaterializationFailure, VerifyOutcomeReport } from '../runner/types';
import { type EventStore, isConcurrencyError } from '../../domain/shared/ports';

type LineageStore = EventStore<StoredEvent<LineageEvent>>;

export type Identity = Readonly<{
  project_id: string;
  device_id: string;
  device_name: string;
  source_table: string;
  kind?: 'rows' | 'telemetry';
}>;

let clock = Date.parse('2026-04-28T09:00:00.000Z');
/** Strictly increasing event times, so ordering by time in tests is stable. */
export const nextTime = (): string => new Date((clock += 1)).toISOString();

export function stored(e: LineageEvent, actor?: string): StoredEvent<LineageEvent> {
  const id = uuidv7();
  return {
    ...e,
    id,
    occurred_at: nextTime(),
    metadata: { causation_id: id, correlation_id: id, ...(actor ? { actor } : {}) },
  } as StoredEvent<LineageEvent>;
}

/** All columns mirrored under their own names (or the given overrides). */
export function bindAll(
  schema: SchemaColumns,
  override: Partial<Record<string, Partial<ColumnBinding>>> = {},
) {
  return schema.columns.map((c): ColumnBinding => ({
    column: c.name,
    action: 'mirror',
    target: c.name,
    affinity: c.decl_type_affinity,
    pk_ordinal: c.pk_ordinal,
    not_null: c.not_null,
    ...override[c.name],
  }));
}

export const upsert = (commit_seq: number, row: Record<string, WireValue>, keyCols = ['id']): RowChange => ({
  commit_seq,
  op: 'insert',
  pk: Object.fromEntries(keyCols.map((k) => [k, row[k] ?? null])),
  row,
});

export const del = (commit_seq: number, pk: RowChange['pk']): RowChange => ({
  commit_seq,
  op: 'delete',
  pk,
  row: null,
});

/** Hand-written events of one lineage, in the words of the rules that decide them. */
export class LineageEvents {
  constructor(
    readonly ids: Identity,
    readonly lineage_id: string = uuidv7(),
  ) {}

  registered(): LineageEvent {
    const { kind = 'rows', ...rest } = this.ids;
    return { type: 'LineageRegistered', data: { lineage_id: this.lineage_id, ...rest, kind } };
  }
  observed(schema: SchemaColumns, classification: Classification = 'ambiguous'): LineageEvent {
    return {
      type: 'SchemaVersionObserved',
      data: { schema_hash: schemaHash(schema), schema_columns: schema, classification },
    };
  }
  queued(
    review_id: string,
    schema: SchemaColumns,
    classification: Classification = 'ambiguous',
  ): LineageEvent {
    return {
      type: 'SchemaReviewQueued',
      data: { review_id, schema_hash: schemaHash(schema), classification, action_version: 1 },
    };
  }
  claimed(review_id: string, action_version = 2): LineageEvent {
    return { type: 'SchemaReviewClaimed', data: { review_id, action_version } };
  }
  approved(
    review_id: string,
    schema: SchemaColumns,
    bindings: readonly ColumnBinding[],
    action_version = 3,
  ): LineageEvent {
    return {
      type: 'SchemaReviewApproved',
      data: { review_id, schema_hash: schemaHash(schema), action_version, bindings },
    };
  }
  paused(reason: PauseReason): LineageEvent {
    return { type: 'LineagePaused', data: { reason } };
  }
  resumed(reason: PauseReason): LineageEvent {
    return { type: 'LineageResumed', data: { reason } };
  }
  staged(
    journal_epoch: string,
    rows: readonly RowChange[],
    opts: { reason?: StagingReason; schema?: SchemaColumns; duplicates?: number } = {},
  ): LineageEvent {
    return {
      type: 'RowsStaged',
      data: {
        batch_id: uuidv7(),
        journal_epoch,
        schema_hash: opts.schema ? schemaHash(opts.schema) : '0'.repeat(64),
        reason: opts.reason ?? 'schema_review',
        rows,
        duplicates_skipped: opts.duplicates ?? 0,
      },
    };
  }
  accepted(
    journal_epoch: string,
    rows: readonly RowChange[],
    opts: { duplicates?: number } = {},
  ): LineageEvent {
    return {
      type: 'RowsAccepted',
      data: {
        batch_id: uuidv7(),
        journal_epoch,
        schema_hash: '0'.repeat(64),
        rows,
        duplicates_skipped: opts.duplicates ?? 0,
      },
    };
  }
  telemetry(batch_seq: number, rows: readonly TelemetryRow[], staged?: StagingReason): LineageEvent {
    const data = { batch_id: uuidv7(), batch_seq, schema_hash: '0'.repeat(64), rows };
    return staged
      ? { type: 'TelemetryStaged', data: { ...data, reason: staged } }
      : { type: 'TelemetryAccepted', data };
  }
  released(replay_id: string, schema: SchemaColumns): LineageEvent {
    return { type: 'StagedRowsReleased', data: { replay_id, schema_hash: schemaHash(schema) } };
  }
  completed(replay_id: string, rows: number): LineageEvent {
    return { type: 'ReplayCompleted', data: { replay_id, rows } };
  }
  /** What the domain records of a failed write the mirror reported: `rows` wait in staging. */
  failed(
    source_seq: number,
    journal_epoch: string | null,
    rows: readonly RowChange[],
    consecutive_failures = 1,
  ): LineageEvent {
    return {
      type: 'MaterializationFailed',
      data: {
        source_seq,
        code: '42P01',
        message: 'relation does not exist',
        permanent: true,
        rows,
        journal_epoch,
        consecutive_failures,
      },
    };
  }
  deleted(reason = 'test'): LineageEvent {
    return { type: 'LineageDeleted', data: { reason } };
  }
}

/** Appends hand-written events of one lineage through the real JetStream event store. */
export class TestLineage extends LineageEvents {
  private version = 0;
  constructor(
    private readonly store: LineageStore,
    ids: Identity,
  ) {
    super(ids);
  }

  /** One decision: resolves to the stream sequence of its message. */
  async append(...events: (LineageEvent | StoredEvent<LineageEvent>)[]): Promise<number> {
    const full = events.map((e) => ('id' in e ? e : stored(e)));
    const r = await this.store.append(this.lineage_id, full, this.version, uuidv7());
    this.version = r.version;
    return r.version;
  }
}

/** Runs commands through the real decider and appends what it decides (a miniature worker). */
export async function decideAndAppend(
  store: LineageStore,
  lineageId: string,
  command: LineageCommand,
  actor?: string,
): Promise<{ seq: number; events: readonly LineageEvent[]; state: LineageState }> {
  // Like the worker: a concurrent append (e.g. a projection's CompleteReplay) means re-decide.
  for (;;) {
    try {
      return await decideOnce(store, lineageId, command, actor);
    } catch (err) {
      if (!isConcurrencyError(err)) throw err;
    }
  }
}

async function decideOnce(
  store: LineageStore,
  lineageId: string,
  command: LineageCommand,
  actor?: string,
): Promise<{ seq: number; events: readonly LineageEvent[]; state: LineageState }> {
  const loaded = await store.load(lineageId);
  const state = fold(lineageDecider, loaded.events);
  const events = lineageDecider.decide(command, state);
  const after = fold(lineageDecider, events, state);
  if (events.length === 0) return { seq: loaded.version, events, state: after };
  const r = await store.append(
    lineageId,
    events.map((e) => stored(e, actor)),
    loaded.version,
    uuidv7(),
  );
  return { seq: r.version, events, state: after };
}

/** A wire row batch as the bridge would hand it to the worker. */
export function rowBatch(
  schema: SchemaColumns,
  journal_epoch: string,
  rows: readonly RowChange[],
  opts: { withColumns?: boolean } = {},
): RowBatch {
  const seqs = rows.map((r) => r.commit_seq);
  return {
    format_version: 1,
    capture_strategy: 'sqlite_row_batch_v1',
    batch_id: uuidv7(),
    journal_epoch,
    source_table: schema.table_name,
    schema_hash: schemaHash(schema),
    ...(opts.withColumns === false ? {} : { schema_columns: schema as RowBatch['schema_columns'] }),
    first_commit_seq: Math.min(...seqs),
    last_commit_seq: Math.max(...seqs),
    rows: rows as RowChange[],
  };
}

/** The ids and time a command handler mints for the decider. */
export const minted = () => ({
  new_control_id: uuidv7(),
  new_replay_id: uuidv7(),
  now: new Date().toISOString(),
});

/** A fake command channel that records what projections send and can forward to the decider. */
export class RecordingCommands {
  readonly sent: { lineageId: string; command: LineageCommand }[] = [];
  readonly failures: { lineageId: string; info: MaterializationFailure }[] = [];
  readonly verifyOutcomes: { lineageId: string; info: VerifyOutcomeReport }[] = [];
  constructor(private readonly forward?: LineageStore) {}
  async send(lineageId: string, command: LineageCommand): Promise<void> {
    if (this.forward) await decideAndAppend(this.forward, lineageId, command);
    this.sent.push({ lineageId, command });
  }
  /** What the worker does with a report: the domain's ReportMaterializationFailure. */
  async reportMaterializationFailure(lineageId: string, info: MaterializationFailure): Promise<void> {
    if (this.forward) {
      const { event_type: _type, ...report } = info;
      await decideAndAppend(this.forward, lineageId, {
        type: 'ReportMaterializationFailure',
        data: { ...report, ...minted(), policy: DEFAULT_POLICY },
      });
    }
    this.failures.push({ lineageId, info });
  }
  /** The mirror's verify comparison (the worker would turn it into CompleteVerify). */
  async reportVerifyOutcome(lineageId: string, info: VerifyOutcomeReport): Promise<void> {
    this.verifyOutcomes.push({ lineageId, info });
  }
}
