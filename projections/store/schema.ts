/**
 * The read store's static tables, one interface per projection (each projection writes only its
 * own tables, so each can be dropped and rebuilt alone). `ReadStoreDB` is their union, the
 * `Database` type of the Kysely instance. Dynamic tables (`edge_mirror_{device8}_{table}`,
 * `edge_ts_{device8}_{table}`) are not typed here: their columns come from approvals.
 *
 * Conventions, the same on SQLite and PostgreSQL so that results are identical on both:
 * timestamps are ISO-8601 UTC text taken from the events (never the wall clock, so a rebuild
 * reproduces them), JSON is text, booleans are integers 0/1, counters are bigint.
 */
import type { Insertable, Selectable } from 'kysely';
import type { CloudRowsTables } from '../cloud_rows/schema';

export type LineageStatus = 'active' | 'paused' | 'deleted';
export type ReplayState = 'none' | 'pending' | 'completed';

// ---------------------------------------------------------------- runner
export interface ProjectionCheckpointsTable {
  name: string;
  version: number;
  /** The last stream sequence whose effects are in the store (0 = nothing yet). */
  position: number;
  /** Wall clock of the last write; informational, not part of any projection's state. */
  updated_at: string;
}
export type RunnerTables = { projection_checkpoints: ProjectionCheckpointsTable };

// ---------------------------------------------------------------- lineages
export interface EdgeTableLineagesTable {
  lineage_id: string;
  project_id: string;
  device_id: string;
  device_name: string;
  source_table: string;
  kind: 'rows' | 'telemetry';
  status: LineageStatus;
  /** JSON array of pause reasons, in the order they were raised. */
  pause_reasons: string;
  /** JSON {reason: detail} of the pauses that said why; null when none did. */
  pause_details: string | null;
  current_schema_hash: string | null;
  approved_schema_hash: string | null;
  staged_rows: number;
  /** Released for replay, not yet confirmed materialized (ReplayCompleted). */
  replaying_rows: number;
  materialized_rows: number;
  duplicates_skipped: number;
  /** JSON array of every journal epoch seen, in order of first appearance. */
  journal_epochs: string;
  /** The newest epoch (first appearance order, as the decider) and its highest commit_seq. */
  last_journal_epoch: string | null;
  last_commit_seq: number | null;
  last_batch_seq: number | null;
  /** When the lineage last took in a batch (rows, telemetry, conflicts or refusals). */
  last_batch_at: string | null;
  replay_id: string | null;
  replay_state: ReplayState;
  /** Consecutive permanent failures the domain recorded (MaterializationFailed); 0 after a reset. */
  materialization_errors: number;
  last_error: string | null;
  deleted_reason: string | null;
  created_at: string;
  updated_at: string;
  /** The device's fleet (LineageFleetAssigned), null when it is in none. */
  fleet_id: string | null;
  /** The registry entry the lineage waits for (`awaiting`) or materializes under (`coalesced`). */
  registry_id: string | null;
  registry_state: 'awaiting' | 'coalesced' | null;
  /** Changes the device could not encode (RowsRefused rows): never materialized. */
  refused_rows: number;
  /** JSON array of the latest refusals (newest last): code, commit_seq, pk, column, message. */
  recent_refusals: string;
  /** The last verify run: requested, then completed with its outcome. */
  last_verify_id: string | null;
  last_verify_status: 'requested' | 'completed' | null;
  last_verify_outcome: 'equal' | 'divergent' | 'not_comparable' | null;
  /** JSON array of the divergent buckets of the last completed run. */
  last_verify_divergent: string | null;
  last_verify_requested_at: string | null;
  last_verify_completed_at: string | null;
  /** The last resync the cloud asked for. */
  last_resync_id: string | null;
  last_resync_reason: string | null;
  /** JSON array of buckets, or null for the whole table. */
  last_resync_buckets: string | null;
  last_resync_at: string | null;
}

export interface EdgeSchemaVersionsTable {
  lineage_id: string;
  schema_hash: string;
  project_id: string;
  classification: string;
  /** JSON of the SchemaColumns the device sent, or null when it has not sent them yet. */
  schema_columns: string | null;
  first_seen_at: string;
  last_seen_at: string;
}

export interface EdgeSchemaReviewsTable {
  review_id: string;
  lineage_id: string;
  project_id: string;
  device_id: string;
  source_table: string;
  schema_hash: string;
  classification: string;
  status: 'queued' | 'in_review' | 'approved' | 'rejected';
  action_version: number;
  reason: string | null;
  claimed_by: string | null;
  decided_by: string | null;
  created_at: string;
  claimed_at: string | null;
  decided_at: string | null;
  updated_at: string;
}

export interface EdgeColumnBindingsTable {
  lineage_id: string;
  column_name: string;
  project_id: string;
  review_id: string;
  schema_hash: string;
  /** Position of the column in the approved schema. */
  ordinal: number;
  action: string;
  target: string | null;
  affinity: string;
  pk_ordinal: number;
  not_null: number;
  approved_at: string;
}

export interface EdgeReplayIntentsTable {
  replay_id: string;
  lineage_id: string;
  project_id: string;
  schema_hash: string;
  status: 'pending' | 'completed';
  /** Rows staged at release time. */
  staged_rows: number;
  completed_rows: number | null;
  created_at: string;
  completed_at: string | null;
}

export type LineagesTables = {
  edge_table_lineages: EdgeTableLineagesTable;
  edge_schema_versions: EdgeSchemaVersionsTable;
  edge_schema_reviews: EdgeSchemaReviewsTable;
  edge_column_bindings: EdgeColumnBindingsTable;
  edge_replay_intents: EdgeReplayIntentsTable;
};

// ---------------------------------------------------------------- shared shape: a projection's own
// copy of a lineage's identity (projections never read each other's tables).
export interface LineageIdentityTable {
  lineage_id: string;
  project_id: string;
  device_id: string;
  device_name: string;
  source_table: string;
  kind: 'rows' | 'telemetry';
}

// ---------------------------------------------------------------- staged_rows
export interface EdgeStagedRowsTable {
  lineage_id: string;
  project_id: string;
  device_id: string;
  source_table: string;
  journal_epoch: string;
  commit_seq: number;
  op: 'insert' | 'update' | 'delete' | 'sweep';
  /** JSON of the key as the device sent it. */
  pk: string;
  pk_hash: string;
  /** JSON of the full row (null for deletes). */
  row: string | null;
  reason: string;
  /** Null for rows staged after a failed materialization (they come from a report, not a batch). */
  batch_id: string | null;
  schema_hash: string | null;
  staged_at: string;
  /** JSON of a sweep's `{resync_id, since_commit_seq, buckets}` (op sweep), else null. */
  sweep: string | null;
}
export type StagedRowsTables = {
  edge_staged_rows: EdgeStagedRowsTable;
  edge_staged_lineages: LineageIdentityTable;
  edge_staged_counts: { lineage_id: string; row_count: number };
  edge_mirror_reports: { lineage_id: string; source_seq: number; journal_epoch: string; report: string };
};

// ---------------------------------------------------------------- segments
export interface EdgeExportSegmentsTable {
  lineage_id: string;
  batch_id: string;
  project_id: string;
  device_id: string;
  source_table: string;
  kind: 'rows' | 'telemetry';
  journal_epoch: string | null;
  batch_seq: number | null;
  first_commit_seq: number | null;
  last_commit_seq: number | null;
  rows: number;
  duplicates: number;
  disposition: 'accepted' | 'staged';
  reason: string | null;
  schema_hash: string;
  received_at: string;
  /** Stream sequence of the first event that recorded the batch. */
  stream_seq: number;
}
export type SegmentsTables = {
  edge_export_segments: EdgeExportSegmentsTable;
  edge_segment_lineages: LineageIdentityTable;
};

// ---------------------------------------------------------------- controls
export interface EdgePendingControlsTable {
  control_id: string;
  lineage_id: string;
  project_id: string;
  device_id: string;
  device_name: string;
  source_table: string;
  control_kind: string;
  server_watermark: number;
  reason: string;
  status: 'pending' | 'acknowledged';
  deliveries: number;
  issued_at: string;
  last_delivered_at: string | null;
  acknowledged_at: string | null;
}
export type ControlsTables = {
  edge_pending_controls: EdgePendingControlsTable;
  edge_control_lineages: LineageIdentityTable;
};

// ---------------------------------------------------------------- rejections
export interface EdgeRejectionsTable {
  stream_seq: number;
  project_id: string | null;
  device_key: string;
  kind: string;
  topic: string;
  code: string;
  message: string;
  received_at: string;
  payload_excerpt: string | null;
}
export type RejectionsTables = { edge_rejections: EdgeRejectionsTable };

// ---------------------------------------------------------------- mirror + telemetry (shared shapes)
/** Per lineage: identity plus what materialization made of it. */
export interface MaterializedLineageTable extends LineageIdentityTable {
  materialization_errors: number;
  failed_rows: number;
  last_error: string | null;
  last_error_at: string | null;
}

/** Rows a materializing projection holds while the lineage stages (its own copy, see §6). */
export interface HeldReplayTable {
  replay_id: string;
  lineage_id: string;
  /** Stream sequence of the release. */
  stream_seq: number;
  rows: number;
  status: 'pending' | 'completed';
  released_at: string;
  completed_at: string | null;
}

export interface EdgeMirrorTablesTable {
  table_name: string;
  lineage_id: string;
  project_id: string;
  device_id: string;
  source_table: string;
  /** 1 for the first table of a lineage; a key or type change starts a new generation. */
  generation: number;
  status: 'current' | 'retired';
  schema_hash: string;
  /** JSON MirrorColumn[]: every physical column and whether the current approval binds it. */
  columns: string;
  created_at: string;
  updated_at: string;
}

export interface EdgeMirrorHeldRowsTable {
  lineage_id: string;
  journal_epoch: string;
  epoch_ordinal: number;
  commit_seq: number;
  op: 'insert' | 'update' | 'delete' | 'sweep';
  pk: string;
  pk_hash: string;
  row: string | null;
  /** JSON of a sweep's `{resync_id, since_commit_seq, buckets}` (op sweep), else null. */
  sweep: string | null;
}

/** The mirror compared with a device's verify report at the same journal position. */
export interface EdgeVerifyRunsTable {
  lineage_id: string;
  verify_id: string;
  project_id: string;
  outcome: 'equal' | 'divergent' | 'not_comparable';
  detail: string | null;
  /** JSON array of bucket numbers. */
  divergent_buckets: string;
  device_rows: number;
  mirror_rows: number;
  journal_epoch: string;
  through_commit_seq: number;
  schema_hash: string;
  /** JSON array of the source columns compared. */
  columns: string;
  /** Stream sequence of the VerifyReported. */
  stream_seq: number;
  reported_at: string;
  /** VerifyCompleted: the domain took the outcome (null until then). */
  completed_at: string | null;
  resync_id: string | null;
}

export interface EdgeMirrorTombstonesTable {
  lineage_id: string;
  pk_hash: string;
  epoch_ordinal: number;
  commit_seq: number;
}

/** Journal epochs of a lineage numbered in the order they first appeared in its events. */
export interface EdgeMirrorEpochsTable {
  lineage_id: string;
  journal_epoch: string;
  ordinal: number;
}

export interface EdgeMirrorFailuresTable {
  lineage_id: string;
  stream_seq: number;
  event_index: number;
  project_id: string;
  event_type: string;
  code: string;
  message: string;
  failed_rows: number;
  /** JSON array of up to 10 keys that failed. */
  sample_keys: string;
  occurred_at: string;
}

export type MirrorTables = {
  edge_mirror_lineages: MaterializedLineageTable;
  edge_mirror_tables: EdgeMirrorTablesTable;
  edge_mirror_held_rows: EdgeMirrorHeldRowsTable;
  edge_mirror_tombstones: EdgeMirrorTombstonesTable;
  edge_mirror_epochs: EdgeMirrorEpochsTable;
  edge_mirror_failures: EdgeMirrorFailuresTable;
  edge_mirror_replays: HeldReplayTable;
  edge_verify_runs: EdgeVerifyRunsTable;
};

export interface EdgeTsLineagesTable extends MaterializedLineageTable {
  table_name: string | null;
  schema_hash: string | null;
  /** JSON TelemetryColumn[]. */
  columns: string;
}

export interface EdgeTsHeldRowsTable {
  lineage_id: string;
  batch_seq: number;
  batch_row: number;
  ts: string;
  row_id: string | null;
  fields: string;
}

/** A coalesced telemetry table of one (scope, source table). */
export interface EdgeTsCoalescedTable {
  table_name: string;
  project_id: string;
  scope: 'project' | 'fleet';
  scope_id: string;
  source_table: string;
  /** JSON MirrorColumn[]: every column an entry of the table binds. */
  columns: string;
}

/** A data point: a named, typed series of one device table (docs/telemetry.md). */
export interface EdgeDataPointsTable {
  lineage_id: string;
  name: string;
  project_id: string;
  device_id: string;
  device_name: string;
  source_table: string;
  source_column: string;
  affinity: string;
  action: string;
  created_at: string;
}

export type TelemetryTables = {
  edge_ts_coalesced_tables: EdgeTsCoalescedTable;
  edge_data_points: EdgeDataPointsTable;
  edge_ts_lineages: EdgeTsLineagesTable;
  edge_ts_held_rows: EdgeTsHeldRowsTable;
  edge_ts_replays: HeldReplayTable;
};

export type ReadStoreDB = RunnerTables &
  LineagesTables &
  StagedRowsTables &
  SegmentsTables &
  ControlsTables &
  RejectionsTables &
  MirrorTables &
  TelemetryTables &
  RegistryTables &
  CoalescedMirrorTables &
  CloudRowsTables;

export type LineageRow = Selectable<EdgeTableLineagesTable>;
export type NewLineageRow = Insertable<EdgeTableLineagesTable>;
export type ReviewRow = Selectable<EdgeSchemaReviewsTable>;
export type StagedRow = Selectable<EdgeStagedRowsTable>;
export type SegmentRow = Selectable<EdgeExportSegmentsTable>;
export type RejectionRow = Selectable<EdgeRejectionsTable>;
export type MirrorTableRow = Selectable<EdgeMirrorTablesTable>;

// ---------------------------------------------------------------- registry (SLUICE_REGISTRY)
export interface EdgeSchemaRegistryTable {
  registry_id: string;
  project_id: string;
  scope: 'project' | 'fleet';
  scope_id: string;
  source_table: string;
  schema_hash: string;
  schema_columns: string | null;
  /** pending (no decision yet), approved, rejected. */
  status: 'pending' | 'approved' | 'rejected';
  /** The open review, else the one that decided (null for an adopted approval). */
  review_id: string | null;
  bindings: string | null;
  /** The lineage whose own approval the entry adopted (consolidation). */
  adopted_from: string | null;
  reason: string | null;
  enrolled_lineages: number;
  created_at: string;
  updated_at: string;
}

export interface EdgeRegistryReviewsTable {
  review_id: string;
  registry_id: string;
  project_id: string;
  scope: 'project' | 'fleet';
  scope_id: string;
  source_table: string;
  schema_hash: string;
  status: 'queued' | 'in_review' | 'approved' | 'rejected' | 'abandoned';
  action_version: number;
  opened_by_lineage: string;
  opened_by_device: string;
  reason: string | null;
  claimed_by: string | null;
  decided_by: string | null;
  created_at: string;
  claimed_at: string | null;
  decided_at: string | null;
  updated_at: string;
}
export type RegistryTables = {
  edge_schema_registry: EdgeSchemaRegistryTable;
  edge_registry_reviews: EdgeRegistryReviewsTable;
};

// ---------------------------------------------------------------- coalesced mirrors (mirror)
export interface EdgeMirrorCoalescedTablesTable {
  table_name: string;
  project_id: string;
  scope: 'project' | 'fleet';
  scope_id: string;
  source_table: string;
  generation: number;
  /** JSON MirrorColumn[]: every physical column of the table (bound: false). */
  columns: string;
  created_at: string;
  updated_at: string;
}
export interface EdgeMirrorCoalescedEntriesTable {
  registry_id: string;
  table_name: string;
  project_id: string;
  schema_hash: string;
  /** JSON MirrorColumn[]: the table's columns, bound as this entry's approval binds them. */
  columns: string;
  created_at: string;
}
export interface EdgeMirrorCoalescedMembersTable {
  lineage_id: string;
  registry_id: string;
  table_name: string;
  project_id: string;
  device_id: string;
  joined_at: string;
}
export type CoalescedMirrorTables = {
  edge_mirror_coalesced_tables: EdgeMirrorCoalescedTablesTable;
  edge_mirror_coalesced_entries: EdgeMirrorCoalescedEntriesTable;
  edge_mirror_coalesced_members: EdgeMirrorCoalescedMembersTable;
};
