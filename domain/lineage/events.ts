import type { ControlKind, RowChange, WireValue } from '../protocol/contracts';
import type { Affinity, SchemaColumns } from '../protocol/fingerprint';

export type LineageKind = 'rows' | 'telemetry';
export type PauseReason =
  | 'schema_review'
  | 'volume_backpressure'
  | 'circuit_breaker'
  | 'deferred_columns'
  /** A telemetry approval maps a column to a data point the device does not have (docs/telemetry.md). */
  | 'data_points';

/** A named, typed series of one device table (docs/telemetry.md): what `map` binds a column to. */
export type DataPoint = Readonly<{
  name: string;
  column: string;
  affinity: Affinity;
  action: 'map' | 'auto_create_and_map';
}>;
export type Classification = 'compatible_mapped' | 'compatible_additive' | 'ambiguous' | 'breaking';
export type StagingReason = 'schema_review' | 'lineage_paused' | 'materialization_failed';
export type ColumnActionKind = 'mirror' | 'map' | 'ignore' | 'defer' | 'auto_create_and_map';

export type ColumnAction = Readonly<{
  column: string;
  action: ColumnActionKind;
  mirror_column_name?: string;
  data_point?: string;
}>;

/** What approval bound a source column to. `affinity`/`pk_ordinal` come from the approved schema. */
export type ColumnBinding = Readonly<{
  column: string;
  action: ColumnActionKind;
  target: string | null;
  affinity: Affinity;
  pk_ordinal: number;
  not_null: boolean;
}>;

export type TelemetryRow = Readonly<{
  ts: string;
  row_id?: string;
  fields: Readonly<Record<string, WireValue>>;
}>;

/** Every event of one lineage. Types are past tense; a change of shape gets a new versioned type. */
export type LineageEvent =
  | Readonly<{
      type: 'LineageRegistered';
      data: {
        lineage_id: string;
        project_id: string;
        device_id: string;
        device_name: string;
        source_table: string;
        kind: LineageKind;
        /** The device's MQTT topic slug: where its controls go (`{slug}/{device}/sync/ingest/control`). */
        topic_slug?: string;
      };
    }>
  | Readonly<{
      type: 'SchemaVersionObserved';
      data: { schema_hash: string; schema_columns: SchemaColumns | null; classification: Classification };
    }>
  | Readonly<{
      /** The device's advisory sync/schema/observe (domain/lineage/observe.ts); no review, no classification. */
      type: 'SchemaObserved';
      data: { schema_hash: string; schema_columns: SchemaColumns | null; observed_at: string };
    }>
  | Readonly<{
      type: 'SchemaReviewQueued';
      data: {
        review_id: string;
        schema_hash: string;
        classification: Classification;
        action_version: number;
      };
    }>
  | Readonly<{ type: 'SchemaReviewClaimed'; data: { review_id: string; action_version: number } }>
  | Readonly<{
      type: 'SchemaReviewApproved';
      data: {
        review_id: string;
        schema_hash: string;
        action_version: number;
        bindings: readonly ColumnBinding[];
        auto_approved_by?: string;
      };
    }>
  | Readonly<{
      type: 'SchemaReviewRejected';
      data: { review_id: string; action_version: number; reason: string };
    }>
  | Readonly<{
      /** An additive schema taken on without review (policy allow_additive_continue): new columns stay unbound. */
      type: 'SchemaVersionAdopted';
      data: { schema_hash: string; bindings: readonly ColumnBinding[]; unbound_columns: readonly string[] };
    }>
  | Readonly<{ type: 'DataPointsCreated'; data: { data_points: readonly DataPoint[] } }>
  | Readonly<{ type: 'LineagePaused'; data: { reason: PauseReason; detail?: string } }>
  | Readonly<{ type: 'LineageResumed'; data: { reason: PauseReason } }>
  | Readonly<{
      type: 'RowsStaged';
      data: {
        batch_id: string;
        journal_epoch: string;
        schema_hash: string;
        reason: StagingReason;
        rows: readonly RowChange[];
        duplicates_skipped: number;
        /** The batch's content digest (see BatchDigest): a reused batch_id with another one is refused. */
        payload_digest?: string;
      };
    }>
  | Readonly<{
      type: 'RowsAccepted';
      data: {
        batch_id: string;
        journal_epoch: string;
        schema_hash: string;
        rows: readonly RowChange[];
        duplicates_skipped: number;
        payload_digest?: string;
      };
    }>
  | Readonly<{
      type: 'TelemetryStaged';
      data: {
        batch_id: string;
        batch_seq: number;
        schema_hash: string;
        reason: StagingReason;
        rows: readonly TelemetryRow[];
        payload_digest?: string;
      };
    }>
  | Readonly<{
      type: 'TelemetryAccepted';
      data: {
        batch_id: string;
        batch_seq: number;
        schema_hash: string;
        rows: readonly TelemetryRow[];
        payload_digest?: string;
      };
    }>
  | Readonly<{ type: 'StagedRowsReleased'; data: { replay_id: string; schema_hash: string } }>
  | Readonly<{ type: 'ReplayCompleted'; data: { replay_id: string; rows: number } }>
  | Readonly<{
      type: 'ControlIssued';
      data: {
        control_id: string;
        control_kind: ControlKind;
        source_table: string;
        server_watermark: number;
        reason: string;
        issued_at: string;
        /** state_write only: the cloud rows to apply, each with its key's current cloud_version. */
        rows?: readonly CloudRowWrite[];
        /** verify only: the run, and the source columns to digest. */
        verify_id?: string;
        columns?: readonly string[];
        /** resync only: the id its sweep carries back, and the key buckets (null: whole table). */
        resync_id?: string;
        buckets?: readonly number[] | null;
      };
    }>
  | Readonly<{
      type: 'ControlDelivered';
      data: { control_id: string; attempt: number; delivered_at: string };
    }>
  | Readonly<{ type: 'ControlAcknowledged'; data: { control_id: string; acknowledged_at: string } }>
  | Readonly<{
      type: 'MaterializationFailed';
      data: {
        source_seq: number;
        code: string;
        message: string;
        permanent: boolean;
        /** Rows the mirror could not take: staged (reason materialization_failed) so none is lost. */
        rows: readonly RowChange[];
        journal_epoch: string | null;
        consecutive_failures: number;
      };
    }>
  | Readonly<{ type: 'MaterializationReset'; data: { previous_failures: number } }>
  | Readonly<{ type: 'LineageDeleted'; data: { reason: string } }>
  | Readonly<{
      /** Coalescing is on: the lineage waits for the registry entry's decision instead of a review of its own. */
      type: 'RegistryReviewAwaited';
      data: { registry_id: string; schema_hash: string; scope: 'project' | 'fleet'; scope_id: string };
    }>
  | Readonly<{
      /**
       * The registry entry for this hash in scope is approved: the lineage takes its bindings and
       * materializes into the scope's coalesced table. The registry review is the cause (metadata).
       */
      type: 'SchemaApprovedByRegistry';
      data: {
        registry_id: string;
        review_id: string | null;
        schema_hash: string;
        scope: 'project' | 'fleet';
        scope_id: string;
        bindings: readonly ColumnBinding[];
      };
    }>
  | Readonly<{ type: 'LineageFleetAssigned'; data: { fleet_id: string | null } }>
  | Readonly<{
      /** Who wins when the device and the cloud both change a key (docs/write-back.md). */
      type: 'LineageAuthoritySet';
      data: { authority: LineageAuthority; previous: LineageAuthority };
    }>
  | Readonly<{
      /** An operator's write-back: `values` as written (merged into the key's cloud row). */
      type: 'CloudRowsWritten';
      data: { cloud_version: number; rows: readonly CloudRowWrite[] };
    }>
  | Readonly<{
      /**
       * Device changes of keys the cloud wrote since the device last saw them (lkcv below the
       * key's cloud_version) on a cloud_authoritative lineage: taken in (deduped), not
       * materialized; the cloud row stands.
       */
      type: 'StateWriteConflictDetected';
      data: {
        batch_id: string;
        journal_epoch: string;
        conflicts: readonly StateWriteConflict[];
        /** Keys whose current cloud row was sent again (a state_write in the same decision). */
        reissued: number;
        payload_digest?: string;
      };
    }>
  | Readonly<{
      /** A url_grant for an upload of one journal range; the control goes out in the same decision. */
      type: 'UploadGranted';
      data: {
        upload_id: string;
        request_id: string;
        control_id: string;
        journal_epoch: string;
        schema_hash: string;
        schema_columns: SchemaColumns | null;
        first_commit_seq: number;
        last_commit_seq: number;
        row_count: number;
        expires_at: string;
      };
    }>
  | Readonly<{
      /** One chunk of an uploaded object taken in (its rows are in the RowsStaged/RowsAccepted before it). */
      type: 'UploadChunkAppended';
      data: { upload_id: string; chunk: number; rows: number; duplicates_skipped: number };
    }>
  | Readonly<{
      type: 'UploadCompleted';
      data: { upload_id: string; chunks: number; rows: number; duplicates_skipped: number };
    }>
  | Readonly<{ type: 'UploadFailed'; data: { upload_id: string; code: string; message: string } }>
  | Readonly<{
      /** Changes the agent could not encode (op `refused`): recorded, never materialized. */
      type: 'RowsRefused';
      data: {
        batch_id: string;
        journal_epoch: string;
        schema_hash: string;
        rows: readonly RowChange[];
        payload_digest?: string;
      };
    }>
  | Readonly<{
      /** A rejected review queued again (its action_version moves on). */
      type: 'SchemaReviewReopened';
      data: { review_id: string; action_version: number };
    }>
  | Readonly<{
      /** A verify control goes out in the same decision (docs/verify.md). */
      type: 'VerifyRequested';
      data: {
        verify_id: string;
        control_id: string;
        /** Source columns digested: the approved (bound) columns, key columns included. */
        columns: readonly string[];
        trigger: 'operator' | 'schedule';
        requested_at: string;
      };
    }>
  | Readonly<{
      /** The device's digests at (journal_epoch, through_commit_seq): ordered after the rows they cover. */
      type: 'VerifyReported';
      data: {
        verify_id: string;
        journal_epoch: string;
        through_commit_seq: number;
        schema_hash: string;
        columns: readonly string[];
        digests: readonly VerifyDigest[];
        reported_at?: string;
      };
    }>
  | Readonly<{
      /** The mirror compared with the report at the same position. */
      type: 'VerifyCompleted';
      data: {
        verify_id: string;
        outcome: VerifyOutcome;
        divergent_buckets: readonly number[];
        device_rows: number;
        mirror_rows: number;
        detail?: string;
        /** Set when divergent buckets are being repaired by a resync. */
        resync_id?: string;
        completed_at?: string;
      };
    }>
  | Readonly<{
      /** A resync control goes out in the same decision (docs/exact-replication.md). */
      type: 'ResyncRequested';
      data: {
        resync_id: string;
        control_id: string;
        /** null: the whole table. */
        buckets: readonly number[] | null;
        reason: 're_enrolment' | 'verify_repair' | 'operator';
      };
    }>;

export type VerifyDigest = Readonly<{ bucket: number; rows: number; digest: string }>;
/** equal; divergent (buckets listed); not_comparable (the mirror could not be read at that position: staged rows, no binding). */
export type VerifyOutcome = 'equal' | 'divergent' | 'not_comparable';

export type LineageAuthority = 'device_authoritative' | 'cloud_authoritative';

/** One row of a cloud write-back, as the state_write control carries it (SPEC §2). */
export type CloudRowWrite = Readonly<{
  pk: Readonly<Record<string, WireValue>>;
  values: Readonly<Record<string, WireValue>>;
  cloud_version: number;
}>;

export type StateWriteConflict = Readonly<{
  pk: Readonly<Record<string, WireValue>>;
  commit_seq: number;
  op: RowChange['op'];
  /** The device's last known cloud version of the key (0 when the batch row carried none). */
  lkcv: number;
  cloud_version: number;
}>;

export type LineageEventType = LineageEvent['type'];

/** An event as stored: the decision's events share causation and correlation. */
export type EventMetadata = Readonly<{
  causation_id: string;
  correlation_id: string;
  actor?: string;
}>;

export type StoredEvent<E = LineageEvent> = E &
  Readonly<{
    id: string;
    occurred_at: string;
    metadata: EventMetadata;
  }>;
