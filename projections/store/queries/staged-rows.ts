import type { WireValue } from '../../../domain/protocol/contracts';
import { type CursorPage, type PageQuery, paging } from '../page';
import { type Db, json } from './common';

export type StagedRowView = Readonly<{
  lineage_id: string;
  device_id: string;
  source_table: string;
  journal_epoch: string;
  commit_seq: number;
  op: 'insert' | 'update' | 'delete' | 'sweep';
  pk: Record<string, WireValue>;
  pk_hash: string;
  row: Record<string, WireValue> | null;
  reason: string;
  batch_id: string | null;
  schema_hash: string | null;
  staged_at: string;
  /** op sweep: `{resync_id, since_commit_seq, buckets}`; null otherwise. */
  sweep: { resync_id: string; since_commit_seq: number; buckets: number[] | null } | null;
}>;

export type ListStagedRowsQuery = PageQuery &
  Readonly<{
    project_id: string;
    lineage_id: string;
    /** Rows after this commit_seq (keyset; `page` is then ignored). */
    after_commit_seq?: number;
    /** The `next_cursor` of a previous page (keyset; `page` is then ignored). */
    after?: string;
  }>;

type Cursor = Readonly<{ commit_seq: number; journal_epoch: string }>;

export const encodeCursor = (c: Cursor): string =>
  Buffer.from(JSON.stringify([c.commit_seq, c.journal_epoch]), 'utf8').toString('base64url');

export function decodeCursor(s: string): Cursor {
  try {
    const [commit_seq, journal_epoch] = JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as [
      unknown,
      unknown,
    ];
    if (typeof commit_seq === 'number' && typeof journal_epoch === 'string')
      return { commit_seq, journal_epoch };
  } catch {
    // fall through
  }
  throw new RangeError('invalid staged-rows cursor');
}

/**
 * Staged rows in (commit_seq, journal_epoch) order. Keyset underneath: a `page` is turned into a
 * cursor by an index-only scan over the key, and the rows themselves are read by key range, so
 * deep pages never read the row bodies they skip.
 */
export async function listStagedRows(db: Db, q: ListStagedRowsQuery): Promise<CursorPage<StagedRowView>> {
  const { page, limit, offset } = paging(q);
  const owned = await db
    .selectFrom('edge_staged_lineages')
    .select('lineage_id')
    .where('lineage_id', '=', q.lineage_id)
    .where('project_id', '=', q.project_id)
    .executeTakeFirst();
  if (!owned) return { items: [], total: 0, page, limit, next_cursor: null };

  let cursor: Cursor | null = null;
  let exclusiveSeq: number | null = null;
  if (q.after !== undefined) cursor = decodeCursor(q.after);
  else if (q.after_commit_seq !== undefined) exclusiveSeq = q.after_commit_seq;
  else if (offset > 0) {
    const boundary = await db
      .selectFrom('edge_staged_rows')
      .select(['commit_seq', 'journal_epoch'])
      .where('lineage_id', '=', q.lineage_id)
      .orderBy('commit_seq')
      .orderBy('journal_epoch')
      .limit(1)
      .offset(offset - 1)
      .executeTakeFirst();
    if (!boundary) {
      const total = await countStaged(db, q.lineage_id);
      return { items: [], total, page, limit, next_cursor: null };
    }
    cursor = boundary;
  }
  const c = cursor;
  const rows = await db
    .selectFrom('edge_staged_rows')
    .selectAll()
    .where('lineage_id', '=', q.lineage_id)
    .$if(c !== null, (b) =>
      b.where((eb) =>
        eb.or([
          eb('commit_seq', '>', c!.commit_seq),
          eb.and([eb('commit_seq', '=', c!.commit_seq), eb('journal_epoch', '>', c!.journal_epoch)]),
        ]),
      ),
    )
    .$if(exclusiveSeq !== null, (b) => b.where('commit_seq', '>', exclusiveSeq!))
    .orderBy('commit_seq')
    .orderBy('journal_epoch')
    .limit(limit)
    .execute();
  const total = await countStaged(db, q.lineage_id);
  const last = rows[rows.length - 1];
  return {
    items: rows.map((r) => ({
      lineage_id: r.lineage_id,
      device_id: r.device_id,
      source_table: r.source_table,
      journal_epoch: r.journal_epoch,
      commit_seq: r.commit_seq,
      op: r.op,
      pk: JSON.parse(r.pk) as Record<string, WireValue>,
      pk_hash: r.pk_hash,
      row: json<Record<string, WireValue>>(r.row),
      reason: r.reason,
      batch_id: r.batch_id,
      schema_hash: r.schema_hash,
      staged_at: r.staged_at,
      sweep: json<StagedRowView['sweep'] & object>(r.sweep),
    })),
    total,
    page,
    limit,
    next_cursor: last && rows.length === limit ? encodeCursor(last) : null,
  };
}

/** The staged_rows projection keeps the count with the rows: no page ever counts a million rows. */
async function countStaged(db: Db, lineageId: string): Promise<number> {
  const r = await db
    .selectFrom('edge_staged_counts')
    .select('row_count')
    .where('lineage_id', '=', lineageId)
    .executeTakeFirst();
  return Number(r?.row_count ?? 0);
}
