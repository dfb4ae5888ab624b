/** The wire contracts of SPEC §2: limits, codes, topics and the zod schemas of every message. */
import { z } from 'zod';

/** Wire limits of SPEC §2. */
export const MAX_BATCH_ROWS = 4096;
export const MAX_PAYLOAD_BYTES = 512 * 1024;
export const FORMAT_VERSION = 1;

export const REJECTION_CODES = [
  'invalid_json',
  'invalid_payload',
  'envelope_unstripped_tenant_fields',
  'invalid_format_version',
  'unsupported_format_version',
  'invalid_batch_id',
  'invalid_journal_epoch',
  'batch_too_many_rows',
  'payload_too_large',
  'commit_seq_range_mismatch',
  'invalid_schema_hash',
  'invalid_source_table',
  'row_count_mismatch',
  'cursor_timestamp_mismatch',
  'invalid_row_id',
  'invalid_number_encoding',
  'duplicate_batch_seq',
  'stale_batch_seq',
  'unknown_control_id',
  'invalid_topic',
  'batch_id_conflict',
] as const;
export type RejectionCode = (typeof REJECTION_CODES)[number];

export type Rejection = Readonly<{ code: RejectionCode; message: string }>;
export type Validated<T> = Readonly<{ ok: true; value: T }> | Readonly<{ ok: false; rejection: Rejection }>;

const UUIDV7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;
export const SHA256_HEX = /^[0-9a-f]{64}$/;
export const TENANT_FIELDS = ['device_id', 'org_id', 'project_id', 'fleet_id'] as const;
// Control characters and the agent's own prefixes never name a replicated table.
// eslint-disable-next-line no-control-regex -- rejecting control characters is the point
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

export const isUuidV7 = (s: unknown): s is string => typeof s === 'string' && UUIDV7.test(s);

export function isValidSourceTable(name: unknown): name is string {
  if (typeof name !== 'string' || name.length === 0 || name.length > 255) return false;
  if (CONTROL_CHARS.test(name) || !name.isWellFormed()) return false;
  const lower = name.toLowerCase();
  return !lower.startsWith('sqlite_') && !lower.startsWith('__sluice_');
}

/** A column value as carried on the wire (SQLite value types; see docs/wire-values.md). */
export const wireValueSchema = z.union([
  z.null(),
  z.number(),
  z.string(),
  z.boolean(),
  z.object({ $blob: z.string() }).strict(),
  z.object({ $int: z.string().regex(/^-?\d+$/) }).strict(),
  // A REAL a JSON number cannot carry with its class: integral, -0, ±Infinity (never NaN).
  z.object({ $real: z.string().regex(/^(-?(\d+(\.\d+)?([eE][+-]?\d+)?)|-?Infinity|-0)$/) }).strict(),
]);
const wireValue = wireValueSchema;
export type WireValue = z.infer<typeof wireValue>;

const record = z.record(z.string(), wireValue);

/** Codes an agent gives a change it cannot put on the wire (the change travels as op `refused`). */
export const REFUSAL_CODES = ['unencodable_text', 'row_too_large'] as const;
export type RefusalCode = (typeof REFUSAL_CODES)[number];

/** Number of key buckets verify and resync speak of (see wire-values.ts, docs/verify.md). */
const bucket = z.number().int().min(0).max(255);

const schemaColumnsSchema = z.object({
  table_name: z.string(),
  columns: z
    .array(
      z.object({
        name: z.string().min(1),
        decl_type_affinity: z.enum(['INTEGER', 'TEXT', 'BLOB', 'REAL', 'NUMERIC']),
        pk_ordinal: z.number().int().min(0),
        not_null: z.boolean(),
      }),
    )
    .min(1)
    .readonly(),
});

const seq = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);

/**
 * One journaled change. Besides insert/update/delete (SPEC §2), two Sluice extensions:
 * - `refused`: the agent could not encode this change (`refusal.code`); the cloud records it,
 *   nothing is materialized, and the changes around it flow on;
 * - `sweep`: the end of a resync. Every row of the named key buckets (all of them when `buckets`
 *   is null) whose last change is older than `since_commit_seq` of this epoch is gone from the
 *   device; `pk` is `{}`.
 */
export const rowChange = z
  .object({
    commit_seq: seq,
    op: z.enum(['insert', 'update', 'delete', 'refused', 'sweep']),
    pk: record,
    row: record.nullable(),
    lkcv: z.number().int().nonnegative().optional(),
    refusal: z
      .object({ code: z.enum(REFUSAL_CODES), column: z.string().optional(), message: z.string().max(500) })
      .optional(),
    sweep: z
      .object({
        resync_id: z.string(),
        since_commit_seq: seq,
        buckets: z.array(bucket).max(256).nullable(),
      })
      .optional(),
  })
  .refine((r) => (r.op === 'insert' || r.op === 'update' ? r.row !== null : r.row === null), {
    message: 'row is the full row for insert/update and null otherwise',
  })
  .refine((r) => (r.op === 'sweep' ? true : Object.keys(r.pk).length > 0), {
    message: 'pk must name at least one column',
  })
  .refine((r) => (r.op === 'refused') === (r.refusal !== undefined), {
    message: 'refusal goes with op refused, and only with it',
  })
  .refine((r) => (r.op === 'sweep') === (r.sweep !== undefined), {
    message: 'sweep goes with op sweep, and only with it',
  });
export type RowChange = z.infer<typeof rowChange>;

export const rowBatchSchema = z.object({
  format_version: z.literal(1),
  capture_strategy: z.literal('sqlite_row_batch_v1'),
  batch_id: z.string(),
  journal_epoch: z.string(),
  source_table: z.string(),
  schema_hash: z.string(),
  schema_columns: schemaColumnsSchema.optional(),
  first_commit_seq: seq,
  last_commit_seq: seq,
  rows: z.array(rowChange).min(1),
});
export type RowBatch = z.infer<typeof rowBatchSchema>;

const telemetryRow = z.object({
  ts: z.string(),
  row_id: z.string().optional(),
  fields: record,
});

export const telemetryBatchSchema = z.object({
  format_version: z.literal(1),
  capture_strategy: z.literal('sqlite_telemetry_batch_v1'),
  batch_id: z.string(),
  batch_seq: seq,
  source_table: z.string(),
  schema_hash: z.string(),
  schema_columns: schemaColumnsSchema.optional(),
  cursor_start_ts: z.string(),
  cursor_end_ts: z.string(),
  row_count: z.number().int().nonnegative(),
  rows: z.array(telemetryRow),
});
export type TelemetryBatch = z.infer<typeof telemetryBatchSchema>;

export const controlAckSchema = z.object({ format_version: z.literal(1), control_id: z.string() });
export type ControlAck = z.infer<typeof controlAckSchema>;

/**
 * `sync/schema/observe` (advisory). The reference product's shape is `{format_version,
 * source_table, schema_hash}`; Sluice's agent adds `schema_columns` (the fingerprint the hash is
 * over) and `capture_strategy`. Both shapes are accepted.
 */
export const schemaObserveSchema = z.object({
  format_version: z.literal(1),
  source_table: z.string(),
  schema_hash: z.string(),
  schema_columns: schemaColumnsSchema.optional(),
  capture_strategy: z.enum(['sqlite_row_batch_v1', 'sqlite_telemetry_batch_v1']).optional(),
});
export type SchemaObserve = z.infer<typeof schemaObserveSchema>;

export const CONTROL_KINDS = [
  'pause_lineage',
  'resume_lineage',
  'url_grant',
  'state_write',
  'verify',
  'resync',
] as const;
export type ControlKind = (typeof CONTROL_KINDS)[number];

export const controlSchema = z.object({
  control_id: z.string(),
  control_kind: z.enum(CONTROL_KINDS),
  source_table: z.string(),
  server_watermark: z.number().int().nonnegative().optional(),
  reason: z.string().optional(),
  issued_at: z.string(),
  rows: z
    .array(z.object({ pk: record, values: record, cloud_version: z.number().int().nonnegative() }))
    .optional(),
  presigned_url: z.string().optional(),
  presigned_url_expires_at: z.string().optional(),
  /** The device the control is for (`{topic_slug}/{device_name}`), covered by the signature. */
  root_topic: z.string().optional(),
  /** url_grant: the upload the presigned URL is for. */
  upload_id: z.string().optional(),
  /** verify: the run the agent's verify_report answers. */
  verify_id: z.string().optional(),
  /** verify: the source columns to digest (the approved ones; key columns always included). */
  columns: z.array(z.string()).optional(),
  /** resync: the id its sweep carries back. */
  resync_id: z.string().optional(),
  /** resync: the key buckets to send again (absent or null: the whole table). */
  buckets: z.array(bucket).max(256).nullable().optional(),
  signature: z.string().optional(),
});
export type Control = z.infer<typeof controlSchema>;

export type Receipt = Readonly<{
  format_version: 1;
  batch_id: string;
  source_table: string;
  journal_epoch?: string;
  last_commit_seq?: number;
  batch_seq?: number;
}>;

export const UPLINK_KINDS = ['rows', 'telemetry', 'schema', 'ack', 'request'] as const;
export type UplinkKind = (typeof UPLINK_KINDS)[number];

/** The topic suffix (under the device root) of each uplink kind. */
export const UPLINK_TOPICS: Readonly<Record<UplinkKind, string>> = {
  rows: 'sync/rows/batch',
  telemetry: 'sync/telemetry/batch',
  schema: 'sync/schema/observe',
  ack: 'sync/ingest/ack',
  request: 'sync/ingest/request',
};
export const CONTROL_TOPIC = 'sync/ingest/control';
export const RECEIPT_TOPIC = 'sync/ingest/receipt';

// ---- Secondary upload flow (SPEC §2: url_request / finalize on sync/ingest/request) ----

/** Largest upload the cloud takes, compressed or not (the decompressed JSONL is capped too). */
export const MAX_UPLOAD_BYTES = 1024 ** 3;
/** How long a url_grant's presigned URL stays valid. */
export const UPLOAD_GRANT_TTL_MS = 15 * 60_000;

const uploadRequestCommon = {
  format_version: z.literal(1),
  request_id: z.string(),
  upload_id: z.string(),
  source_table: z.string(),
  journal_epoch: z.string(),
  schema_hash: z.string(),
  first_commit_seq: seq,
  last_commit_seq: seq,
  row_count: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
};

/** The device asks for an upload URL for one journal range of one table (one epoch, one schema). */
export const urlRequestSchema = z.object({
  ...uploadRequestCommon,
  request_kind: z.literal('url_request'),
  schema_columns: schemaColumnsSchema.optional(),
});
export type UrlRequest = z.infer<typeof urlRequestSchema>;

/** The device says the object behind its url_grant is uploaded: the cloud may take the rows in. */
export const finalizeSchema = z.object({ ...uploadRequestCommon, request_kind: z.literal('finalize') });
export type UploadFinalize = z.infer<typeof finalizeSchema>;

/**
 * The agent's answer to a `verify` control: per key bucket, the row count and the XOR of the
 * rows' digests over `columns`, read in one transaction at journal position
 * (`journal_epoch`, `through_commit_seq`). Sent only once every change through that position is
 * confirmed, so the cloud has them before the report.
 */
export const verifyReportSchema = z.object({
  format_version: z.literal(1),
  request_kind: z.literal('verify_report'),
  request_id: z.string(),
  verify_id: z.string(),
  source_table: z.string(),
  journal_epoch: z.string(),
  through_commit_seq: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  schema_hash: z.string(),
  columns: z.array(z.string()).min(1),
  digests: z
    .array(
      z.object({
        bucket,
        rows: z.number().int().positive(),
        digest: z.string().regex(/^[0-9a-f]{64}$/),
      }),
    )
    .max(256),
});
export type VerifyReport = z.infer<typeof verifyReportSchema>;

export type UploadRequest = UrlRequest | UploadFinalize | VerifyReport;
