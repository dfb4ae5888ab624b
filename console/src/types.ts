/** The API's answers, as far as the console reads them (the OpenAPI at /openapi.json has all). */

export type Page<T> = Readonly<{ items: T[]; total: number; page: number | null; limit: number }>;
export type CursorPage<T> = Page<T> & Readonly<{ next_cursor: string | null }>;

/** A value as the API encodes it: JSON scalars, or `{$int}`, `{$real}`, `{$blob}` wrappers. */
export type WireValue = string | number | boolean | null | Readonly<Record<string, string>>;
export type Row = Readonly<Record<string, WireValue>>;

export type LineageStatus = 'active' | 'paused' | 'deleted';

export type Lineage = Readonly<{
  lineage_id: string;
  device_id: string;
  device_name: string;
  source_table: string;
  kind: 'rows' | 'telemetry';
  status: LineageStatus;
  pause_reasons: string[];
  staged_rows: number;
  replaying_rows: number;
  materialized_rows: number;
  duplicates_skipped: number;
  refused_rows: number;
  materialization_errors: number;
  last_error: string | null;
  fleet_id: string | null;
  deleted_reason: string | null;
  registry_state: 'awaiting' | 'coalesced' | null;
  /** When the lineage last took in a batch (absent from read stores older than the field). */
  last_batch_at?: string | null;
  created_at: string;
  updated_at: string;
  replay: { replay_id: string; state: 'pending' | 'completed' } | null;
  verify: {
    verify_id: string;
    status: 'requested' | 'completed';
    outcome: string | null;
    divergent_buckets: number[];
  } | null;
}>;

export type Review = Readonly<{
  review_id: string;
  lineage_id: string;
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
  decided_at: string | null;
  schema_columns: SchemaColumns | null;
}>;

export type SchemaColumn = Readonly<{
  name: string;
  decl_type_affinity: string;
  pk_ordinal: number;
  not_null: boolean;
}>;
export type SchemaColumns = Readonly<{ table_name: string; columns: SchemaColumn[] }>;

export type Binding = Readonly<{
  column: string;
  action: string;
  target: string | null;
  affinity: string;
  pk_ordinal: number;
}>;

export type SchemaDiff = Readonly<{
  against_hash: string | null;
  added: string[];
  removed: string[];
  retyped: { column: string; from: string; to: string }[];
  rekeyed: { column: string; from: number; to: number }[];
}>;

export type ReviewDetail = Review & Readonly<{ diff: SchemaDiff | null; current_bindings: Binding[] }>;

export type LineageDetail = Lineage &
  Readonly<{
    reviews: Review[];
    open_review: Review | null;
    bindings: (Binding & { review_id: string; approved_at: string })[];
    materialization: {
      table_name: string | null;
      errors: number;
      failed_rows: number;
      last_error: string | null;
      last_error_at: string | null;
      recent_failures: {
        stream_seq: number;
        code: string;
        message: string;
        failed_rows: number;
        occurred_at: string;
      }[];
    };
    write_back: { authority: string; last_cloud_version: number };
  }>;

export type StagedRow = Readonly<{
  commit_seq: number;
  op: string;
  pk: Row;
  row: Row | null;
  reason: string;
  staged_at: string;
}>;

export type MirrorRow = Readonly<{ key: Row; row: Row; source_commit_seq: number }>;
export type MirrorPage = Page<MirrorRow> & Readonly<{ table: string | null; columns: { name: string }[] }>;

export type CloudRow = Readonly<{
  pk: Row;
  values: Row;
  cloud_version: number;
  status: string;
  device_version: number | null;
  conflicts: number;
  written_at: string;
}>;

export type Control = Readonly<{
  control_id: string;
  control_kind: string;
  reason: string;
  status: 'pending' | 'acknowledged';
  deliveries: number;
  issued_at: string;
  acknowledged_at: string | null;
}>;

export type CommandResult = Readonly<{
  events: { id: string; type: string }[];
  review?: { review_id: string; status: string; action_version: number };
}>;

export type AuditEvent = Readonly<{
  seq: number;
  index: number;
  id: string;
  type: string;
  occurred_at: string;
  recorded_at: string;
  data: unknown;
  metadata: { actor?: string } | null;
}>;

export type AuditState = Readonly<{
  as_of: string;
  version: number;
  events: number;
  state: Readonly<Record<string, unknown>>;
}>;

export type Device = Readonly<{
  device_id: string;
  device_name: string;
  fleet_id: string | null;
  lineages: number;
  /** The last batch of any of its tables. */
  last_seen_at?: string | null;
}>;

export type Rejection = Readonly<{
  stream_seq: number;
  device_key: string;
  kind: string;
  code: string;
  message: string;
  received_at: string;
}>;

export type RegistryReview = Readonly<{
  review_id: string;
  registry_id: string;
  scope: 'project' | 'fleet';
  scope_id: string;
  source_table: string;
  schema_hash: string;
  status: string;
  action_version: number;
  opened_by_device: string;
  claimed_by: string | null;
  created_at: string;
}>;

export type RegistryEntry = Readonly<{
  registry_id: string;
  scope: 'project' | 'fleet';
  scope_id: string;
  source_table: string;
  schema_hash: string;
  status: string;
  enrolled_lineages: number;
  coalesced_lineages: number;
  updated_at: string;
}>;

export type CoalescedMirror = Readonly<{
  table_name: string;
  scope: string;
  scope_id: string;
  source_table: string;
  generation: number;
  lineages: number;
  rows: number;
  columns: { name: string; column: string; affinity: string; pk_ordinal: number }[];
}>;
