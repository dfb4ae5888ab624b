/** One lineage with its schema versions, bindings, replays, reviews and materialization. */
import type { RefusalView } from '../../lineages/projection';
import { type Db, json } from './common';
import { type LineageSummary, lineageSummary } from './lineages';
import { type ReviewView, reviewViews } from './reviews';

export type MaterializationView = Readonly<{
  /** The current mirror (or telemetry) table, null until an approval provisioned one. */
  table_name: string | null;
  /** Whether `table_name` is a coalesced table shared by the devices of a project or fleet. */
  coalesced?: boolean;
  tables: { table_name: string; generation: number; status: 'current' | 'retired' }[];
  errors: number;
  failed_rows: number;
  last_error: string | null;
  last_error_at: string | null;
  recent_failures: {
    stream_seq: number;
    event_type: string;
    code: string;
    message: string;
    failed_rows: number;
    sample_keys: unknown[];
    occurred_at: string;
  }[];
}>;

export type LineageDetail = LineageSummary &
  Readonly<{
    /** The latest refusals, newest last (the counter is `refused_rows`). */
    recent_refusals: RefusalView[];
    schema_versions: {
      schema_hash: string;
      classification: string;
      schema_columns: unknown;
      first_seen_at: string;
      last_seen_at: string;
    }[];
    bindings: {
      column: string;
      action: string;
      target: string | null;
      affinity: string;
      pk_ordinal: number;
      not_null: boolean;
      review_id: string;
      schema_hash: string;
      approved_at: string;
    }[];
    replays: {
      replay_id: string;
      status: 'pending' | 'completed';
      schema_hash: string;
      staged_rows: number;
      completed_rows: number | null;
      created_at: string;
      completed_at: string | null;
    }[];
    reviews: ReviewView[];
    open_review: ReviewView | null;
    materialization: MaterializationView;
    /** Cloud write-back (docs/write-back.md): who wins, and the last cloud_version written. */
    write_back: { authority: string; last_cloud_version: number };
  }>;

async function materializationOf(
  db: Db,
  lineageId: string,
  kind: 'rows' | 'telemetry',
): Promise<MaterializationView> {
  if (kind === 'telemetry') {
    const t = await db
      .selectFrom('edge_ts_lineages')
      .selectAll()
      .where('lineage_id', '=', lineageId)
      .executeTakeFirst();
    return {
      table_name: t?.table_name ?? null,
      tables: t?.table_name ? [{ table_name: t.table_name, generation: 1, status: 'current' }] : [],
      errors: t?.materialization_errors ?? 0,
      failed_rows: t?.failed_rows ?? 0,
      last_error: t?.last_error ?? null,
      last_error_at: t?.last_error_at ?? null,
      recent_failures: [],
    };
  }
  const [m, tables, failures, member] = await Promise.all([
    db.selectFrom('edge_mirror_lineages').selectAll().where('lineage_id', '=', lineageId).executeTakeFirst(),
    db
      .selectFrom('edge_mirror_tables')
      .select(['table_name', 'generation', 'status'])
      .where('lineage_id', '=', lineageId)
      .orderBy('generation')
      .execute(),
    db
      .selectFrom('edge_mirror_failures')
      .selectAll()
      .where('lineage_id', '=', lineageId)
      .orderBy('stream_seq', 'desc')
      .orderBy('event_index', 'desc')
      .limit(10)
      .execute(),
    db
      .selectFrom('edge_mirror_coalesced_members')
      .select('table_name')
      .where('lineage_id', '=', lineageId)
      .executeTakeFirst(),
  ]);
  return {
    // A coalesced lineage writes to its scope's table (its rows there carry its device_id).
    table_name: member?.table_name ?? tables.find((t) => t.status === 'current')?.table_name ?? null,
    coalesced: member !== undefined,
    tables,
    errors: m?.materialization_errors ?? 0,
    failed_rows: m?.failed_rows ?? 0,
    last_error: m?.last_error ?? null,
    last_error_at: m?.last_error_at ?? null,
    recent_failures: failures.map((f) => ({
      stream_seq: f.stream_seq,
      event_type: f.event_type,
      code: f.code,
      message: f.message,
      failed_rows: f.failed_rows,
      sample_keys: JSON.parse(f.sample_keys) as unknown[],
      occurred_at: f.occurred_at,
    })),
  };
}

/** One lineage with everything an operator needs to see why it is where it is; null if not found. */
export async function getLineage(
  db: Db,
  projectId: string,
  lineageId: string,
): Promise<LineageDetail | null> {
  const row = await db
    .selectFrom('edge_table_lineages')
    .selectAll()
    .where('project_id', '=', projectId)
    .where('lineage_id', '=', lineageId)
    .executeTakeFirst();
  if (!row) return null;
  const [versions, bindings, replays, reviews, materialization] = await Promise.all([
    db
      .selectFrom('edge_schema_versions')
      .selectAll()
      .where('lineage_id', '=', lineageId)
      .orderBy('first_seen_at')
      .orderBy('schema_hash')
      .execute(),
    db
      .selectFrom('edge_column_bindings')
      .selectAll()
      .where('lineage_id', '=', lineageId)
      .orderBy('ordinal')
      .execute(),
    db
      .selectFrom('edge_replay_intents')
      .selectAll()
      .where('lineage_id', '=', lineageId)
      .orderBy('created_at')
      .orderBy('replay_id')
      .execute(),
    db
      .selectFrom('edge_schema_reviews')
      .selectAll()
      .where('lineage_id', '=', lineageId)
      .orderBy('created_at')
      .orderBy('review_id')
      .execute(),
    materializationOf(db, lineageId, row.kind),
  ]);
  const reviewList = await reviewViews(db, reviews);
  const summary = lineageSummary(row);
  return {
    ...summary,
    // The mirror counts what it saw fail; the domain's count (issue-5) catches up with it.
    materialization_errors: Math.max(summary.materialization_errors, materialization.errors),
    last_error: materialization.last_error ?? summary.last_error,
    schema_versions: versions.map((v) => ({
      schema_hash: v.schema_hash,
      classification: v.classification,
      schema_columns: json(v.schema_columns),
      first_seen_at: v.first_seen_at,
      // Batches run under the current schema: its last sighting is the lineage's last batch
      // (derived here, so intake writes nothing more per batch).
      last_seen_at:
        v.schema_hash === row.current_schema_hash && row.last_batch_at && row.last_batch_at > v.last_seen_at
          ? row.last_batch_at
          : v.last_seen_at,
    })),
    bindings: bindings.map((b) => ({
      column: b.column_name,
      action: b.action,
      target: b.target,
      affinity: b.affinity,
      pk_ordinal: b.pk_ordinal,
      not_null: b.not_null === 1,
      review_id: b.review_id,
      schema_hash: b.schema_hash,
      approved_at: b.approved_at,
    })),
    replays: replays.map((r) => ({
      replay_id: r.replay_id,
      status: r.status,
      schema_hash: r.schema_hash,
      staged_rows: r.staged_rows,
      completed_rows: r.completed_rows,
      created_at: r.created_at,
      completed_at: r.completed_at,
    })),
    reviews: reviewList,
    open_review:
      [...reviewList].reverse().find((r) => r.status === 'queued' || r.status === 'in_review') ?? null,
    materialization,
    write_back: await writeBackOf(db, lineageId),
    recent_refusals: JSON.parse(row.recent_refusals ?? '[]') as RefusalView[],
  };
}

async function writeBackOf(db: Db, lineageId: string): Promise<LineageDetail['write_back']> {
  const w = await db
    .selectFrom('edge_cloud_lineages')
    .select(['authority', 'last_cloud_version'])
    .where('lineage_id', '=', lineageId)
    .executeTakeFirst();
  return {
    authority: w?.authority ?? 'device_authoritative',
    last_cloud_version: Number(w?.last_cloud_version ?? 0),
  };
}
