/** Validation of what devices send (SPEC §2): parse, envelope and shape checks, one rejection code each. */
import { schemaHash } from './fingerprint';
import type { z } from 'zod';
import {
  type ControlAck,
  FORMAT_VERSION,
  MAX_BATCH_ROWS,
  MAX_PAYLOAD_BYTES,
  type Rejection,
  type RejectionCode,
  type RowBatch,
  type RowChange,
  SHA256_HEX,
  type SchemaObserve,
  TENANT_FIELDS,
  type TelemetryBatch,
  type UploadRequest,
  type Validated,
  type VerifyReport,
  controlAckSchema,
  finalizeSchema,
  isUuidV7,
  isValidSourceTable,
  rowBatchSchema,
  rowChange,
  schemaObserveSchema,
  telemetryBatchSchema,
  urlRequestSchema,
  verifyReportSchema,
} from './wire';

const reject = (code: RejectionCode, message: string): Validated<never> => ({
  ok: false,
  rejection: { code, message },
});

/**
 * Parse bytes as JSON, rejecting what JSON.parse would silently accept but the protocol
 * forbids: non-finite numbers (1e999 → Infinity) and `__proto__` keys.
 */
export function parseJsonPayload(bytes: Uint8Array | string): Validated<unknown> {
  const size = typeof bytes === 'string' ? new TextEncoder().encode(bytes).byteLength : bytes.byteLength;
  if (size > MAX_PAYLOAD_BYTES)
    return reject('payload_too_large', `payload is ${size} bytes; the limit is ${MAX_PAYLOAD_BYTES}`);
  let text: string;
  try {
    text = typeof bytes === 'string' ? bytes : new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return reject('invalid_json', 'payload is not valid UTF-8');
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return reject('invalid_json', `payload is not JSON: ${(err as Error).message}`);
  }
  const problem = inspectJson(value);
  if (problem) return { ok: false, rejection: problem };
  return { ok: true, value };
}

/** Deepest nesting a payload may have; a row batch needs five levels. */
export const MAX_JSON_DEPTH = 32;

/**
 * Walk a parsed payload without recursion (a hostile 100k-deep array must not blow the stack):
 * too deep, non-finite numbers (1e999 parses to Infinity) and `__proto__` keys are refused. The
 * walk is depth-first in document order, so a payload with several problems is always refused
 * for the first one in the text.
 */
function inspectJson(root: unknown): Rejection | undefined {
  const stack: [value: unknown, depth: number, key: string | undefined][] = [[root, 1, undefined]];
  while (stack.length > 0) {
    const [v, depth, key] = stack.pop()!;
    if (key === '__proto__') return { code: 'invalid_payload', message: 'payload holds a "__proto__" key' };
    if (typeof v === 'number' && !Number.isFinite(v)) {
      return { code: 'invalid_number_encoding', message: 'payload holds a number that is not finite' };
    }
    if (typeof v !== 'object' || v === null) continue;
    if (depth > MAX_JSON_DEPTH) {
      return { code: 'invalid_payload', message: `payload is nested deeper than ${MAX_JSON_DEPTH} levels` };
    }
    // Children go on the stack last first, so they come off in document order.
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], depth + 1, undefined]);
      continue;
    }
    const keys = Object.keys(v);
    for (let i = keys.length - 1; i >= 0; i--) {
      const k = keys[i]!;
      stack.push([(v as Record<string, unknown>)[k], depth + 1, k]);
    }
  }
  return undefined;
}

function envelopeChecks(raw: unknown): Rejection | undefined {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return { code: 'invalid_payload', message: 'payload must be a JSON object' };
  }
  const obj = raw as Record<string, unknown>;
  const tenant = TENANT_FIELDS.filter((f) => Object.hasOwn(obj, f));
  if (tenant.length > 0) {
    return {
      code: 'envelope_unstripped_tenant_fields',
      message: `payload carries ${tenant.join(', ')}; tenant scope comes only from the connection`,
    };
  }
  const fv = obj.format_version;
  if (fv === undefined || fv === 0 || fv === null) {
    return { code: 'invalid_format_version', message: 'format_version is missing or 0' };
  }
  if (typeof fv !== 'number' || !Number.isInteger(fv) || fv < 0) {
    return { code: 'invalid_format_version', message: 'format_version must be a positive integer' };
  }
  if (fv > FORMAT_VERSION) {
    return {
      code: 'unsupported_format_version',
      message: `format_version ${fv} is newer than ${FORMAT_VERSION}`,
    };
  }
  return undefined;
}

function shapeRejection(error: z.ZodError): Rejection {
  const first = error.issues[0];
  const path = first ? first.path.join('.') : '';
  return { code: 'invalid_payload', message: `${path || 'payload'}: ${first?.message ?? 'invalid'}` };
}

function commonBatchChecks(obj: Record<string, unknown>): Rejection | undefined {
  if (!isUuidV7(obj.batch_id)) return { code: 'invalid_batch_id', message: 'batch_id must be a UUIDv7' };
  if (!isValidSourceTable(obj.source_table)) {
    return { code: 'invalid_source_table', message: 'source_table is empty, too long, or reserved' };
  }
  if (typeof obj.schema_hash !== 'string' || !SHA256_HEX.test(obj.schema_hash)) {
    return { code: 'invalid_schema_hash', message: 'schema_hash must be 64 lowercase hex characters' };
  }
  if (Array.isArray(obj.rows) && obj.rows.length > MAX_BATCH_ROWS) {
    return {
      code: 'batch_too_many_rows',
      message: `batch has ${obj.rows.length} rows; the limit is ${MAX_BATCH_ROWS}`,
    };
  }
  return undefined;
}

export function validateRowBatch(raw: unknown): Validated<RowBatch> {
  const env = envelopeChecks(raw);
  if (env) return { ok: false, rejection: env };
  const obj = raw as Record<string, unknown>;
  const common = commonBatchChecks(obj);
  if (common) return { ok: false, rejection: common };
  if (!isUuidV7(obj.journal_epoch)) return reject('invalid_journal_epoch', 'journal_epoch must be a UUIDv7');
  const parsed = rowBatchSchema.safeParse(raw);
  if (!parsed.success) return { ok: false, rejection: shapeRejection(parsed.error) };
  const batch = parsed.data;
  let min = Number.POSITIVE_INFINITY;
  let max = 0;
  const seen = new Set<number>();
  for (const r of batch.rows) {
    if (seen.has(r.commit_seq))
      return reject('commit_seq_range_mismatch', `commit_seq ${r.commit_seq} appears twice`);
    seen.add(r.commit_seq);
    min = Math.min(min, r.commit_seq);
    max = Math.max(max, r.commit_seq);
  }
  if (min !== batch.first_commit_seq || max !== batch.last_commit_seq) {
    return reject(
      'commit_seq_range_mismatch',
      `first/last_commit_seq ${batch.first_commit_seq}..${batch.last_commit_seq} do not match the rows' ${min}..${max}`,
    );
  }
  if (batch.schema_columns && batch.schema_columns.table_name !== batch.source_table) {
    return reject('invalid_payload', 'schema_columns.table_name differs from source_table');
  }
  return { ok: true, value: batch };
}

export function validateTelemetryBatch(raw: unknown): Validated<TelemetryBatch> {
  const env = envelopeChecks(raw);
  if (env) return { ok: false, rejection: env };
  const obj = raw as Record<string, unknown>;
  const common = commonBatchChecks(obj);
  if (common) return { ok: false, rejection: common };
  const parsed = telemetryBatchSchema.safeParse(raw);
  if (!parsed.success) return { ok: false, rejection: shapeRejection(parsed.error) };
  const batch = parsed.data;
  if (batch.row_count !== batch.rows.length) {
    return reject('row_count_mismatch', `row_count ${batch.row_count} but ${batch.rows.length} rows`);
  }
  const start = Date.parse(batch.cursor_start_ts);
  const end = Date.parse(batch.cursor_end_ts);
  if (Number.isNaN(start) || Number.isNaN(end) || start > end) {
    return reject('cursor_timestamp_mismatch', 'cursor_start_ts/cursor_end_ts are not ordered timestamps');
  }
  for (const r of batch.rows) {
    const t = Date.parse(r.ts);
    if (Number.isNaN(t) || t < start || t > end) {
      return reject('cursor_timestamp_mismatch', `row ts ${r.ts} lies outside the cursor range`);
    }
    if (r.row_id !== undefined && !isUuidV7(r.row_id))
      return reject('invalid_row_id', 'row_id must be a UUIDv7');
  }
  return { ok: true, value: batch };
}

export function validateControlAck(raw: unknown): Validated<ControlAck> {
  const env = envelopeChecks(raw);
  if (env) return { ok: false, rejection: env };
  const parsed = controlAckSchema.safeParse(raw);
  if (!parsed.success) return { ok: false, rejection: shapeRejection(parsed.error) };
  if (!isUuidV7(parsed.data.control_id)) return reject('unknown_control_id', 'control_id is not a UUIDv7');
  return { ok: true, value: parsed.data };
}

export function validateSchemaObserve(raw: unknown): Validated<SchemaObserve> {
  const env = envelopeChecks(raw);
  if (env) return { ok: false, rejection: env };
  const parsed = schemaObserveSchema.safeParse(raw);
  if (!parsed.success) return { ok: false, rejection: shapeRejection(parsed.error) };
  if (!isValidSourceTable(parsed.data.source_table))
    return reject('invalid_source_table', 'source_table is invalid');
  if (!SHA256_HEX.test(parsed.data.schema_hash))
    return reject('invalid_schema_hash', 'schema_hash must be 64 hex');
  const cols = parsed.data.schema_columns;
  if (cols && cols.table_name !== parsed.data.source_table) {
    return reject('invalid_payload', 'schema_columns.table_name differs from source_table');
  }
  if (cols && schemaHash(cols) !== parsed.data.schema_hash) {
    return reject('invalid_schema_hash', 'schema_hash is not the fingerprint hash of schema_columns');
  }
  return { ok: true, value: parsed.data };
}

export function validateUploadRequest(raw: unknown): Validated<UploadRequest> {
  const env = envelopeChecks(raw);
  if (env) return { ok: false, rejection: env };
  const obj = raw as Record<string, unknown>;
  if (obj.request_kind === 'verify_report') return validateVerifyReport(obj);
  if (obj.request_kind !== 'url_request' && obj.request_kind !== 'finalize') {
    return reject('invalid_payload', 'request_kind must be url_request, finalize or verify_report');
  }
  if (!isUuidV7(obj.upload_id)) return reject('invalid_batch_id', 'upload_id must be a UUIDv7');
  if (!isUuidV7(obj.request_id)) return reject('invalid_batch_id', 'request_id must be a UUIDv7');
  if (!isValidSourceTable(obj.source_table)) {
    return reject('invalid_source_table', 'source_table is empty, too long, or reserved');
  }
  if (!isUuidV7(obj.journal_epoch)) return reject('invalid_journal_epoch', 'journal_epoch must be a UUIDv7');
  if (typeof obj.schema_hash !== 'string' || !SHA256_HEX.test(obj.schema_hash)) {
    return reject('invalid_schema_hash', 'schema_hash must be 64 lowercase hex characters');
  }
  const parsed = (obj.request_kind === 'url_request' ? urlRequestSchema : finalizeSchema).safeParse(raw);
  if (!parsed.success) return { ok: false, rejection: shapeRejection(parsed.error) };
  const r = parsed.data;
  if (r.first_commit_seq > r.last_commit_seq || r.row_count > r.last_commit_seq - r.first_commit_seq + 1) {
    return reject(
      'commit_seq_range_mismatch',
      `${r.row_count} rows cannot lie in commit_seq ${r.first_commit_seq}..${r.last_commit_seq}`,
    );
  }
  if (
    r.request_kind === 'url_request' &&
    r.schema_columns &&
    r.schema_columns.table_name !== r.source_table
  ) {
    return reject('invalid_payload', 'schema_columns.table_name differs from source_table');
  }
  return { ok: true, value: r };
}

function validateVerifyReport(obj: Record<string, unknown>): Validated<VerifyReport> {
  if (!isUuidV7(obj.request_id)) return reject('invalid_batch_id', 'request_id must be a UUIDv7');
  if (!isUuidV7(obj.verify_id)) return reject('invalid_payload', 'verify_id must be a UUIDv7');
  if (!isValidSourceTable(obj.source_table)) {
    return reject('invalid_source_table', 'source_table is empty, too long, or reserved');
  }
  if (!isUuidV7(obj.journal_epoch)) return reject('invalid_journal_epoch', 'journal_epoch must be a UUIDv7');
  if (typeof obj.schema_hash !== 'string' || !SHA256_HEX.test(obj.schema_hash)) {
    return reject('invalid_schema_hash', 'schema_hash must be 64 lowercase hex characters');
  }
  const parsed = verifyReportSchema.safeParse(obj);
  if (!parsed.success) return { ok: false, rejection: shapeRejection(parsed.error) };
  const seen = new Set<number>();
  for (const d of parsed.data.digests) {
    if (seen.has(d.bucket)) return reject('invalid_payload', `bucket ${d.bucket} appears twice`);
    seen.add(d.bucket);
  }
  return { ok: true, value: parsed.data };
}

/** One line of an upload's JSONL: a row change exactly as in a row batch. */
export function validateUploadLine(raw: unknown): Validated<RowChange> {
  const parsed = rowChange.safeParse(raw);
  if (!parsed.success) return { ok: false, rejection: shapeRejection(parsed.error) };
  return { ok: true, value: parsed.data };
}
