import { canonicalJson } from '../../domain/shared/canonical';
import type { RowChange } from '../../domain/protocol/contracts';
import type { SchemaColumns } from '../../domain/protocol/fingerprint';

export type RowBatchInput = Readonly<{
  batchId: string;
  table: string;
  epoch: string;
  /** The schema every change was read under (one read transaction). */
  hash: string;
  fingerprint: SchemaColumns;
  /** Consecutive changes, oldest first. The batch takes a prefix of them. */
  changes: readonly RowChange[];
  /** Whether the batch carries schema_columns (first batch of a table, or after a schema change). */
  withSchema: boolean;
  /** The cloud_version a change of a key (canonical JSON of the wire pk) was made under, if any. */
  lkcvOf?: (pkCanonical: string, commitSeq: number) => number | undefined;
  maxRows: number;
  maxBytes: number;
}>;

export type BuiltRowBatch = Readonly<{
  batchId: string;
  firstSeq: number;
  lastSeq: number;
  rowCount: number;
  hash: string;
  withSchema: boolean;
  payload: string;
  bytes: number;
}>;

export type RowBatchResult = Readonly<{
  batch?: BuiltRowBatch;
  /** Changes refused because they are larger than max_batch_bytes even alone. */
  tooLarge: readonly { seq: number; bytes: number }[];
  /** Changes whose key alone is larger than max_batch_bytes: left out. */
  unsendable: readonly number[];
  /** The last seq this result accounts for (in the batch, or left out). */
  throughSeq: number;
}>;

const utf8 = (s: string) => Buffer.byteLength(s, 'utf8');

/** A change as one JSON line of a batch or upload, with its lkcv when the key has a cloud version. */
export function changeJson(change: RowChange, lkcvOf: RowBatchInput['lkcvOf']): string {
  if (change.op === 'sweep' || change.op === 'refused') return JSON.stringify(change);
  const lkcv = lkcvOf?.(canonicalJson(change.pk), change.commit_seq);
  return JSON.stringify(lkcv === undefined ? change : { ...change, lkcv });
}

/** A change too large to travel even alone: it goes as `refused` with its key. */
export function refuseTooLarge(change: RowChange, bytes: number, maxBytes: number): RowChange {
  return {
    commit_seq: change.commit_seq,
    op: 'refused',
    pk: change.pk,
    row: null,
    refusal: {
      code: 'row_too_large',
      message: `the row is ${bytes} bytes as JSON, more than max_batch_bytes (${maxBytes}) even alone`,
    },
  };
}

/**
 * Build one row batch (SPEC §2) from the oldest changes: one table, one schema_hash (all were
 * read in one transaction), at most maxRows rows and maxBytes bytes. A change that does not fit
 * even alone travels as `refused` (row_too_large): it never blocks the table.
 */
export function buildRowBatch(input: RowBatchInput): RowBatchResult {
  const rows: string[] = [];
  const tooLarge: { seq: number; bytes: number }[] = [];
  const unsendable: number[] = [];
  let skippedThrough = 0;
  let rowBytes = 0;
  let firstSeq = 0;
  let lastSeq = 0;

  const envelope = (first: number, last: number) => ({
    format_version: 1,
    capture_strategy: 'sqlite_row_batch_v1',
    batch_id: input.batchId,
    journal_epoch: input.epoch,
    source_table: input.table,
    schema_hash: input.hash,
    ...(input.withSchema ? { schema_columns: input.fingerprint } : {}),
    first_commit_seq: first,
    last_commit_seq: last,
  });
  const envelopeBytes =
    utf8(JSON.stringify(envelope(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER))) + utf8(',"rows":[]');

  for (const change of input.changes) {
    if (rows.length >= input.maxRows) break;
    let json = changeJson(change, input.lkcvOf);
    let size = utf8(json) + (rows.length > 0 ? 1 : 0);
    if (envelopeBytes + utf8(json) > input.maxBytes) {
      // Alone and still too big: it can never be delivered as it is.
      tooLarge.push({ seq: change.commit_seq, bytes: utf8(json) });
      json = JSON.stringify(refuseTooLarge(change, utf8(json), input.maxBytes));
      size = utf8(json) + (rows.length > 0 ? 1 : 0);
    }
    if (envelopeBytes + rowBytes + size > input.maxBytes) {
      if (rows.length === 0) {
        // Even its key alone is too large: nothing of it can travel; left out (the caller logs it).
        unsendable.push(change.commit_seq);
        skippedThrough = change.commit_seq;
        continue;
      }
      if (tooLarge.at(-1)?.seq === change.commit_seq) tooLarge.pop();
      break;
    }
    rows.push(json);
    rowBytes += size;
    if (rows.length === 1) firstSeq = change.commit_seq;
    lastSeq = change.commit_seq;
  }

  if (rows.length === 0) return { tooLarge, unsendable, throughSeq: skippedThrough };
  const head = JSON.stringify(envelope(firstSeq, lastSeq));
  const payload = `${head.slice(0, -1)},"rows":[${rows.join(',')}]}`;
  return {
    batch: {
      batchId: input.batchId,
      firstSeq,
      lastSeq,
      rowCount: rows.length,
      hash: input.hash,
      withSchema: input.withSchema,
      payload,
      bytes: utf8(payload),
    },
    tooLarge,
    unsendable,
    throughSeq: lastSeq,
  };
}
