import { canonicalJson } from '../../domain/shared/canonical';
import type { RowChange, WireValue } from '../../domain/protocol/contracts';
import { parseJournalArray } from '../capture/values';
import type { JournalEntry, SchemaVersion } from '../capture/journal';

const OPS = { I: 'insert', U: 'update', D: 'delete' } as const;

export type RowBatchInput = Readonly<{
  batchId: string;
  table: string;
  epoch: string;
  /** Consecutive journal entries, oldest first. The batch takes a prefix of them. */
  entries: readonly JournalEntry[];
  schemaOf: (sv: number) => SchemaVersion;
  /** Whether the batch carries schema_columns for this hash (first batch of a table, or after drift). */
  withSchemaFor: (hash: string) => boolean;
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
  /** Entries too large to travel even alone in a batch: left out, reported by the caller. */
  oversize: readonly { seq: number; bytes: number }[];
  /** The last journal seq this result accounts for (sent or left out). */
  throughSeq: number;
}>;

export function decodeEntry(entry: JournalEntry, schema: SchemaVersion): RowChange {
  const values = parseJournalArray(entry.data);
  const zip = (names: readonly string[]): Record<string, WireValue> => {
    const out: Record<string, WireValue> = {};
    names.forEach((n, i) => (out[n] = values[i] ?? null));
    return out;
  };
  const op = OPS[entry.op];
  if (op === 'delete') return { commit_seq: entry.seq, op, pk: zip(schema.pk), row: null };
  const row = zip(schema.columns);
  const pk: Record<string, WireValue> = {};
  for (const k of schema.pk) pk[k] = row[k] ?? null;
  return { commit_seq: entry.seq, op, pk, row };
}

const utf8 = (s: string) => Buffer.byteLength(s, 'utf8');

/**
 * Build one row batch (SPEC §2) from the oldest entries: one table, one schema_hash, at most
 * maxRows rows and maxBytes bytes. Stops where the schema hash changes so every row of a batch
 * was captured under the hash the batch names.
 */
export function buildRowBatch(input: RowBatchInput): RowBatchResult {
  const rows: string[] = [];
  const oversize: { seq: number; bytes: number }[] = [];
  let hash: string | undefined;
  let schema: SchemaVersion | undefined;
  let envelopeBytes = 0;
  let rowBytes = 0;
  let firstSeq = 0;
  let lastSeq = 0;
  let throughSeq = 0;
  let withSchema = false;

  const envelope = (first: number, last: number) => ({
    format_version: 1,
    capture_strategy: 'sqlite_row_batch_v1',
    batch_id: input.batchId,
    journal_epoch: input.epoch,
    source_table: input.table,
    schema_hash: hash,
    ...(withSchema && schema ? { schema_columns: schema.fingerprint } : {}),
    first_commit_seq: first,
    last_commit_seq: last,
  });

  for (const entry of input.entries) {
    const sv = input.schemaOf(entry.sv);
    if (hash === undefined) {
      hash = sv.hash;
      schema = sv;
      withSchema = input.withSchemaFor(sv.hash);
      envelopeBytes =
        utf8(JSON.stringify(envelope(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER))) + utf8(',"rows":[]');
    } else if (sv.hash !== hash) break;
    if (rows.length >= input.maxRows) break;

    const change = decodeEntry(entry, sv);
    const lkcv = input.lkcvOf?.(canonicalJson(change.pk), change.commit_seq);
    const json = JSON.stringify(lkcv === undefined ? change : { ...change, lkcv });
    const size = utf8(json) + (rows.length > 0 ? 1 : 0);
    if (envelopeBytes + size > input.maxBytes) {
      if (rows.length > 0) break;
      // Alone and still too big: it can never be delivered, so it must not block the table.
      oversize.push({ seq: entry.seq, bytes: size });
      throughSeq = entry.seq;
      continue;
    }
    if (envelopeBytes + rowBytes + size > input.maxBytes) break;
    rows.push(json);
    rowBytes += size;
    if (rows.length === 1) firstSeq = entry.seq;
    lastSeq = entry.seq;
    throughSeq = entry.seq;
  }

  if (rows.length === 0) return { oversize, throughSeq };
  const head = JSON.stringify(envelope(firstSeq, lastSeq));
  const payload = `${head.slice(0, -1)},"rows":[${rows.join(',')}]}`;
  return {
    batch: {
      batchId: input.batchId,
      firstSeq,
      lastSeq,
      rowCount: rows.length,
      hash: hash!,
      withSchema,
      payload,
      bytes: utf8(payload),
    },
    oversize,
    throughSeq,
  };
}
