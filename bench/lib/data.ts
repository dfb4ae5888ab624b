import { uuidv7 } from 'uuidv7';
import type { RowChange } from '../../domain/protocol/contracts';
import { type SchemaColumns, schemaHash } from '../../domain/protocol/fingerprint';
import { rng } from '../../tests/support/prng';

/**
 * The benchmark's rows: one table `items (id INTEGER PRIMARY KEY, body TEXT, n INTEGER)`, whose
 * rows serialize to about 64 B, 256 B or 1 KiB of JSON. Keys are zipf-distributed over a fixed
 * key space, so hot keys repeat, also inside one batch (updates of a row already sent).
 */
export const ROW_SIZES = [64, 256, 1024] as const;
export type RowSize = (typeof ROW_SIZES)[number];

export const TABLE = 'items';
export const ITEMS_DDL =
  'CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, body TEXT NOT NULL, n INTEGER)';
export const ITEMS_SCHEMA: SchemaColumns = {
  table_name: TABLE,
  columns: [
    { name: 'id', decl_type_affinity: 'INTEGER', pk_ordinal: 1, not_null: false },
    { name: 'body', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: true },
    { name: 'n', decl_type_affinity: 'INTEGER', pk_ordinal: 0, not_null: false },
  ],
};

export type Item = { id: number; body: string; n: number };

/** Zipf(s) over keys 1..keys: key k has weight 1/k^s. */
export function zipf(keys: number, s = 1.1, seed = 42): () => number {
  const cdf = new Float64Array(keys);
  let sum = 0;
  for (let k = 1; k <= keys; k++) cdf[k - 1] = sum += 1 / k ** s;
  const random = rng(seed);
  return () => {
    const u = random() * sum;
    let lo = 0;
    let hi = keys - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lo + 1;
  };
}

/** `{"id":…,"body":"…","n":…}` is about `size` bytes (the row as JSON, keys 1..10⁶). */
export function bodyFor(size: number): string {
  return 'x'.repeat(Math.max(8, size - 34));
}

/** `count` rows with zipf keys (1..keys); `n` is the change's ordinal from `from`. */
export function items(count: number, size: number, keys: number, seed = 42, from = 1): Item[] {
  const next = zipf(keys, 1.1, seed);
  const body = bodyFor(size);
  return Array.from({ length: count }, (_, i) => ({ id: next(), body, n: from + i }));
}

/** Rows per batch as the agent cuts them: ≤ 4096 rows and about ≤ 480 KiB of wire JSON. */
export function rowsPerBatch(size: number): number {
  return Math.max(1, Math.min(4096, Math.floor((480 * 1024) / (size + 60))));
}

/** The changes as the agent would journal them: commit_seq from 1, insert first, then updates. */
export function changes(rows: readonly Item[]): RowChange[] {
  const seen = new Set<number>();
  return rows.map((r, i) => {
    const op = seen.has(r.id) ? 'update' : 'insert';
    seen.add(r.id);
    return { commit_seq: i + 1, op, pk: { id: r.id }, row: { id: r.id, body: r.body, n: r.n } };
  });
}

export type WireBatch = Readonly<{ topic: string; body: string; rows: number; batch_id: string }>;

/** Row batches on the wire (`sqlite_row_batch_v1` JSON), as one device sends them. */
export function wireBatches(
  rows: readonly Item[],
  size: number,
  device: string,
  slug = 'bench',
): WireBatch[] {
  const all = changes(rows);
  const per = rowsPerBatch(size);
  const epoch = uuidv7();
  const hash = schemaHash(ITEMS_SCHEMA);
  const out: WireBatch[] = [];
  for (let i = 0; i < all.length; i += per) {
    const part = all.slice(i, i + per);
    const batch_id = uuidv7();
    const body = JSON.stringify({
      format_version: 1,
      capture_strategy: 'sqlite_row_batch_v1',
      batch_id,
      journal_epoch: epoch,
      source_table: TABLE,
      schema_hash: hash,
      ...(i === 0 ? { schema_columns: ITEMS_SCHEMA } : {}),
      first_commit_seq: part[0]!.commit_seq,
      last_commit_seq: part[part.length - 1]!.commit_seq,
      rows: part,
    });
    out.push({ topic: `${slug}/${device}/sync/rows/batch`, body, rows: part.length, batch_id });
  }
  return out;
}
