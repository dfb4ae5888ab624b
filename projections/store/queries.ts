/**
 * Read queries of the HTTP API. Every function takes the project it answers for and never returns
 * another project's rows (a lineage id from another project reads as "not found"). Lists page as
 * `./page.ts` says.
 */
import { type Kysely, SqliteAdapter, sql } from 'kysely';
import type { WireValue } from '../../domain/protocol/contracts';
import type { RefusalView } from '../lineages/projection';
import type { MirrorColumn } from '../mirror/columns';
import { quoteIdent } from './identifiers';
import { type CursorPage, type Page, type PageQuery, paging } from './page';
import type { LineageStatus, ReadStoreDB } from './schema';
import { bindPostgresValue } from './postgres';
import { bindSqliteValue } from './sqlite';
import { dbToWire } from './values';

type Db = Kysely<ReadStoreDB>;

const json = <T>(text: string | null): T | null => (text === null ? null : (JSON.parse(text) as T));

// ------------------------------------------------------------------ lineages

export type LineageSummary = Readonly<{
  lineage_id: string;
  project_id: string;
  device_id: string;
  device_name: string;
  source_table: string;
  kind: 'rows' | 'telemetry';
  status: LineageStatus;
  pause_reasons: string[];
  /** What a pause said about itself, by reason (e.g. which data points are missing). */
  pause_details: Record<string, string>;
  current_schema_hash: string | null;
  approved_schema_hash: string | null;
  staged_rows: number;
  replaying_rows: number;
  materialized_rows: number;
  duplicates_skipped: number;
  last_journal_epoch: string | null;
  last_commit_seq: number | null;
  last_batch_seq: number | null;
  /** When the lineage last took in a batch; null before the first (or in a store not refolded since). */
  last_batch_at: string | null;
  replay: { replay_id: string; state: 'pending' | 'completed' } | null;
  materialization_errors: number;
  last_error: string | null;
  deleted_reason: string | null;
  created_at: string;
  updated_at: string;
  fleet_id: string | null;
  /** The registry entry the lineage waits for (`awaiting`) or materializes under (`coalesced`). */
  registry_id: string | null;
  registry_state: 'awaiting' | 'coalesced' | null;
  /** Changes the device could not encode (op refused): recorded, never materialized. */
  refused_rows: number;
  /** The last verify run (VerifyRequested, then VerifyCompleted), or null. */
  verify: {
    verify_id: string;
    status: 'requested' | 'completed';
    outcome: 'equal' | 'divergent' | 'not_comparable' | null;
    divergent_buckets: number[];
    requested_at: string | null;
    completed_at: string | null;
  } | null;
  /** The last resync the cloud asked for, or null. */
  resync: {
    resync_id: string;
    reason: string;
    /** null: the whole table. */
    buckets: number[] | null;
    requested_at: string;
  } | null;
}>;

function lineageSummary(r: ReadStoreDB['edge_table_lineages']): LineageSummary {
  return {
    lineage_id: r.lineage_id,
    project_id: r.project_id,
    device_id: r.device_id,
    device_name: r.device_name,
    source_table: r.source_table,
    kind: r.kind,
    status: r.status,
    pause_reasons: JSON.parse(r.pause_reasons) as string[],
    pause_details: JSON.parse(r.pause_details ?? '{}') as Record<string, string>,
    current_schema_hash: r.current_schema_hash,
    approved_schema_hash: r.approved_schema_hash,
    staged_rows: r.staged_rows,
    replaying_rows: r.replaying_rows,
    materialized_rows: r.materialized_rows,
    duplicates_skipped: r.duplicates_skipped,
    last_journal_epoch: r.last_journal_epoch,
    last_commit_seq: r.last_commit_seq,
    last_batch_seq: r.last_batch_seq,
    last_batch_at: r.last_batch_at ?? null,
    replay:
      r.replay_id && r.replay_state !== 'none' ? { replay_id: r.replay_id, state: r.replay_state } : null,
    materialization_errors: r.materialization_errors,
    last_error: r.last_error,
    deleted_reason: r.deleted_reason,
    created_at: r.created_at,
    updated_at: r.updated_at,
    fleet_id: r.fleet_id ?? null,
    registry_id: r.registry_id ?? null,
    registry_state: r.registry_state ?? null,
    refused_rows: Number(r.refused_rows ?? 0),
    verify:
      r.last_verify_id && r.last_verify_status
        ? {
            verify_id: r.last_verify_id,
            status: r.last_verify_status,
            outcome: r.last_verify_outcome,
            divergent_buckets: json<number[]>(r.last_verify_divergent) ?? [],
            requested_at: r.last_verify_requested_at,
            completed_at: r.last_verify_completed_at,
          }
        : null,
    resync:
      r.last_resync_id && r.last_resync_at
        ? {
            resync_id: r.last_resync_id,
            reason: r.last_resync_reason ?? '',
            buckets: json<number[]>(r.last_resync_buckets),
            requested_at: r.last_resync_at,
          }
        : null,
  };
}

export type ListLineagesQuery = PageQuery &
  Readonly<{
    project_id: string;
    /** A device id (UUID) or a device name. */
    device?: string;
    /** Without it, deleted lineages are left out. */
    status?: LineageStatus;
    /** Only the lineages of devices in this fleet. */
    fleet_id?: string;
  }>;

export async function listLineages(db: Db, q: ListLineagesQuery): Promise<Page<LineageSummary>> {
  const { page, limit, offset } = paging(q);
  const base = db
    .selectFrom('edge_table_lineages')
    .where('project_id', '=', q.project_id)
    .$if(q.status !== undefined, (b) => b.where('status', '=', q.status!))
    .$if(q.status === undefined, (b) => b.where('status', '!=', 'deleted'))
    .$if(q.device !== undefined, (b) =>
      b.where((eb) => eb.or([eb('device_id', '=', q.device!), eb('device_name', '=', q.device!)])),
    )
    .$if(q.fleet_id !== undefined, (b) => b.where('fleet_id', '=', q.fleet_id!));
  const [rows, count] = await Promise.all([
    base.selectAll().orderBy('created_at').orderBy('lineage_id').limit(limit).offset(offset).execute(),
    base.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
  ]);
  return { items: rows.map(lineageSummary), total: Number(count.n), page, limit };
}

export type ReviewView = Readonly<{
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
  /** The columns of the schema under review, when the device has sent them. */
  schema_columns: unknown;
}>;

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

async function reviewViews(db: Db, rows: ReadStoreDB['edge_schema_reviews'][]): Promise<ReviewView[]> {
  if (rows.length === 0) return [];
  const versions = await db
    .selectFrom('edge_schema_versions')
    .select(['lineage_id', 'schema_hash', 'schema_columns'])
    .where('lineage_id', 'in', [...new Set(rows.map((r) => r.lineage_id))])
    .execute();
  const columns = new Map(versions.map((v) => [`${v.lineage_id}/${v.schema_hash}`, v.schema_columns]));
  return rows.map((r) => ({
    ...r,
    schema_columns: json(columns.get(`${r.lineage_id}/${r.schema_hash}`) ?? null),
  }));
}

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

// ------------------------------------------------------------------ verify runs

export type VerifyRunView = Readonly<{
  lineage_id: string;
  verify_id: string;
  outcome: 'equal' | 'divergent' | 'not_comparable';
  detail: string | null;
  divergent_buckets: number[];
  device_rows: number;
  mirror_rows: number;
  journal_epoch: string;
  through_commit_seq: number;
  schema_hash: string;
  columns: string[];
  reported_at: string;
  /** Set once the domain recorded the outcome (VerifyCompleted). */
  completed_at: string | null;
  /** The resync repairing the divergent buckets, when the domain started one. */
  resync_id: string | null;
}>;

/**
 * The mirror's comparisons with the device's verify reports (edge_verify_runs), newest first.
 * Scoped by project like every query.
 */
export async function listVerifyRuns(
  db: Db,
  q: PageQuery & Readonly<{ project_id: string; lineage_id: string }>,
): Promise<Page<VerifyRunView>> {
  const { page, limit, offset } = paging(q);
  const base = db
    .selectFrom('edge_verify_runs')
    .where('project_id', '=', q.project_id)
    .where('lineage_id', '=', q.lineage_id);
  const [rows, count] = await Promise.all([
    base
      .selectAll()
      .orderBy('stream_seq', 'desc')
      .orderBy('verify_id', 'desc')
      .limit(limit)
      .offset(offset)
      .execute(),
    base.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
  ]);
  return {
    items: rows.map((r) => ({
      lineage_id: r.lineage_id,
      verify_id: r.verify_id,
      outcome: r.outcome,
      detail: r.detail,
      divergent_buckets: JSON.parse(r.divergent_buckets) as number[],
      device_rows: Number(r.device_rows),
      mirror_rows: Number(r.mirror_rows),
      journal_epoch: r.journal_epoch,
      through_commit_seq: Number(r.through_commit_seq),
      schema_hash: r.schema_hash,
      columns: JSON.parse(r.columns) as string[],
      reported_at: r.reported_at,
      completed_at: r.completed_at,
      resync_id: r.resync_id,
    })),
    total: Number(count.n),
    page,
    limit,
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

// ------------------------------------------------------------------ staged rows

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

// ------------------------------------------------------------------ mirror rows

export type MirrorRowView = Readonly<{
  /** Key values by mirror column name (the approved target name). */
  key: Record<string, WireValue>;
  /** Every column of the table by mirror column name, wire-encoded ($int, $blob). */
  row: Record<string, WireValue>;
  device_id: string;
  source_commit_seq: number;
  source_journal_epoch: string;
}>;

export type MirrorColumnView = Readonly<{
  name: string;
  column: string;
  source_column: string;
  affinity: string;
  pk_ordinal: number;
  bound: boolean;
}>;

/** Whether the project has this lineage (deleted ones included): one indexed read. */
export async function lineageExists(db: Db, project_id: string, lineage_id: string): Promise<boolean> {
  const r = await db
    .selectFrom('edge_table_lineages')
    .select('lineage_id')
    .where('lineage_id', '=', lineage_id)
    .where('project_id', '=', project_id)
    .executeTakeFirst();
  return r !== undefined;
}

export type MirrorRowsQuery = PageQuery &
  Readonly<{
    project_id: string;
    lineage_id: string;
    /** The `next_cursor` of the previous page: rows after its last key (keyset; `page` ignored). */
    after?: string;
    /** Count the lineage's rows (`total`); without it `total` is null and nothing is counted. */
    count?: boolean;
  }>;

/** `next_cursor` is the key of the page's last row, for `after`. */
export type MirrorRowsPage = Omit<CursorPage<MirrorRowView>, 'total'> &
  Readonly<{
    /** Only when asked (`count`): counting is a scan of the lineage's rows. */
    total: number | null;
    table: string | null;
    columns: MirrorColumnView[];
  }>;

/** A cursor is the last row's key in wire form, in key order: exact for every storage class. */
const encodeKeyCursor = (key: readonly WireValue[]): string =>
  Buffer.from(JSON.stringify(key), 'utf8').toString('base64url');

function decodeKeyCursor(
  s: string,
  affinities: readonly MirrorColumn['affinity'][],
  bind: typeof bindSqliteValue,
) {
  try {
    const key = JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(key) && key.length === affinities.length && key.every((v) => v !== null)) {
      return key.map((v, i) => bind(affinities[i]!, v as WireValue));
    }
  } catch {
    // fall through
  }
  throw new RangeError('invalid mirror-rows cursor');
}

/**
 * The lineage's current mirror rows ordered by key; `table` is null until one is provisioned.
 * Pages by key: `after` (a `next_cursor`) reads the next rows through the primary key, at any
 * depth; `page` (OFFSET) still works for a person stepping through pages. No row count unless
 * asked: a poller that reads page 1 over and over must not scan the table each time.
 */
export async function listMirrorRows(db: Db, q: MirrorRowsQuery): Promise<MirrorRowsPage> {
  const { page, limit, offset } = paging(q);
  const member = await db
    .selectFrom('edge_mirror_coalesced_members as m')
    .innerJoin('edge_mirror_coalesced_entries as e', 'e.registry_id', 'm.registry_id')
    .select(['m.table_name', 'e.columns', 'm.device_id'])
    .where('m.lineage_id', '=', q.lineage_id)
    .where('m.project_id', '=', q.project_id)
    .executeTakeFirst();
  const t =
    member ??
    (await db
      .selectFrom('edge_mirror_tables')
      .select(['table_name', 'columns'])
      .where('lineage_id', '=', q.lineage_id)
      .where('project_id', '=', q.project_id)
      .where('status', '=', 'current')
      .executeTakeFirst());
  const kind = db.getExecutor().adapter instanceof SqliteAdapter ? 'sqlite' : 'postgres';
  if (!t) {
    if (q.after !== undefined) throw new RangeError('invalid mirror-rows cursor');
    return { items: [], total: q.count ? 0 : null, page, limit, next_cursor: null, table: null, columns: [] };
  }
  const columns = JSON.parse(t.columns) as MirrorColumn[];
  const keys = columns.filter((c) => c.key > 0).sort((a, b) => a.key - b.key);
  const after =
    q.after === undefined
      ? undefined
      : decodeKeyCursor(
          q.after,
          keys.map((k) => k.affinity),
          kind === 'sqlite' ? bindSqliteValue : bindPostgresValue,
        );
  // A coalesced table holds every device of the scope: this lineage's rows are its device's.
  const device = member ? sql`"device_id" = ${member.device_id}` : undefined;
  const keyList = sql.raw(keys.map((k) => quoteIdent(k.name)).join(', '));
  const from = after ? sql`(${keyList}) > (${sql.join(after.map((v) => sql`${v}`))})` : undefined;
  const conditions = [device, from].filter((c) => c !== undefined);
  const where = conditions.length ? sql` WHERE ${sql.join(conditions, sql` AND `)}` : sql``;
  const table = sql.raw(quoteIdent(t.table_name));
  // Aliases c0..cN: column names are device data; we never echo them as SQL aliases.
  const select = sql.raw(
    [
      ...columns.map((c, i) => `${quoteIdent(c.name)} AS "c${i}"`),
      '"device_id" AS "s_device_id"',
      '"source_commit_seq" AS "s_commit_seq"',
      '"source_journal_epoch" AS "s_epoch"',
    ].join(', '),
  );
  const skip = after ? 0 : offset;
  const [rows, count] = await Promise.all([
    // EXACT_MARKER: integers are not normalised, so an INTEGER and an integral REAL stay apart.
    sql<
      Record<string, unknown>
    >`/*sluice:exact*/ SELECT ${select} FROM ${table}${where} ORDER BY ${keyList} LIMIT ${limit} OFFSET ${skip}`.execute(
      db,
    ),
    q.count
      ? sql<{
          n: number | bigint | string;
        }>`SELECT COUNT(*) AS n FROM ${table}${device ? sql` WHERE ${device}` : sql``}`.execute(db)
      : undefined,
  ]);
  const items = rows.rows.map((r) => {
    const row: Record<string, WireValue> = {};
    columns.forEach((c, i) => {
      row[c.target] = dbToWire(kind, c.affinity, r[`c${i}`]);
    });
    const key: Record<string, WireValue> = {};
    for (const k of keys) key[k.target] = row[k.target] ?? null;
    return {
      key,
      row,
      device_id: String(r.s_device_id),
      source_commit_seq: Number(r.s_commit_seq),
      source_journal_epoch: String(r.s_epoch),
    };
  });
  const last = items[items.length - 1];
  return {
    items,
    total: count ? Number(count.rows[0]?.n ?? 0) : null,
    page,
    limit,
    next_cursor:
      last && items.length === limit ? encodeKeyCursor(keys.map((k) => last.key[k.target] ?? null)) : null,
    table: t.table_name,
    columns: columns.map((c) => ({
      name: c.target,
      column: c.name,
      source_column: c.source,
      affinity: c.affinity,
      pk_ordinal: c.key,
      bound: c.bound,
    })),
  };
}

// ------------------------------------------------------------------ reviews

export type ListReviewsQuery = PageQuery &
  Readonly<{ project_id: string; status?: ReviewView['status']; lineage_id?: string; fleet_id?: string }>;

export async function listReviews(db: Db, q: ListReviewsQuery): Promise<Page<ReviewView>> {
  const { page, limit, offset } = paging(q);
  const base = db
    .selectFrom('edge_schema_reviews')
    .where('project_id', '=', q.project_id)
    .$if(q.status !== undefined, (b) => b.where('status', '=', q.status!))
    .$if(q.lineage_id !== undefined, (b) => b.where('lineage_id', '=', q.lineage_id!))
    .$if(q.fleet_id !== undefined, (b) =>
      b.where(
        'lineage_id',
        'in',
        db
          .selectFrom('edge_table_lineages')
          .select('lineage_id')
          .where('project_id', '=', q.project_id)
          .where('fleet_id', '=', q.fleet_id!),
      ),
    );
  const [rows, count] = await Promise.all([
    base.selectAll().orderBy('created_at').orderBy('review_id').limit(limit).offset(offset).execute(),
    base.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
  ]);
  return { items: await reviewViews(db, rows), total: Number(count.n), page, limit };
}

export async function getReview(db: Db, projectId: string, reviewId: string): Promise<ReviewView | null> {
  const row = await db
    .selectFrom('edge_schema_reviews')
    .selectAll()
    .where('project_id', '=', projectId)
    .where('review_id', '=', reviewId)
    .executeTakeFirst();
  if (!row) return null;
  const [view] = await reviewViews(db, [row]);
  return view ?? null;
}

// ------------------------------------------------------------------ controls

export type PendingControlView = ReadStoreDB['edge_pending_controls'];

/** Controls, oldest first; by default only those the device has not acknowledged yet. */
export async function listPendingControls(
  db: Db,
  q: PageQuery &
    Readonly<{ project_id: string; lineage_id?: string; status?: PendingControlView['status'] | 'all' }>,
): Promise<Page<PendingControlView>> {
  const { page, limit, offset } = paging(q);
  const status = q.status ?? 'pending';
  const base = db
    .selectFrom('edge_pending_controls')
    .where('project_id', '=', q.project_id)
    .$if(status !== 'all', (b) => b.where('status', '=', status as PendingControlView['status']))
    .$if(q.lineage_id !== undefined, (b) => b.where('lineage_id', '=', q.lineage_id!));
  const [rows, count] = await Promise.all([
    base.selectAll().orderBy('issued_at').orderBy('control_id').limit(limit).offset(offset).execute(),
    base.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
  ]);
  return { items: rows, total: Number(count.n), page, limit };
}

// ------------------------------------------------------------------ rejections, segments

export type RejectionView = ReadStoreDB['edge_rejections'];

/** Newest first. */
export async function listRejections(
  db: Db,
  q: PageQuery & Readonly<{ project_id: string; code?: string; device_key?: string }>,
): Promise<Page<RejectionView>> {
  const { page, limit, offset } = paging(q);
  const base = db
    .selectFrom('edge_rejections')
    .where('project_id', '=', q.project_id)
    .$if(q.code !== undefined, (b) => b.where('code', '=', q.code!))
    .$if(q.device_key !== undefined, (b) => b.where('device_key', '=', q.device_key!));
  const [rows, count] = await Promise.all([
    base.selectAll().orderBy('stream_seq', 'desc').limit(limit).offset(offset).execute(),
    base.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
  ]);
  return { items: rows, total: Number(count.n), page, limit };
}

export type SegmentView = ReadStoreDB['edge_export_segments'];

/** The batch ledger, newest first. */
export async function listSegments(
  db: Db,
  q: PageQuery & Readonly<{ project_id: string; lineage_id?: string }>,
): Promise<Page<SegmentView>> {
  const { page, limit, offset } = paging(q);
  const base = db
    .selectFrom('edge_export_segments')
    .where('project_id', '=', q.project_id)
    .$if(q.lineage_id !== undefined, (b) => b.where('lineage_id', '=', q.lineage_id!));
  const [rows, count] = await Promise.all([
    base.selectAll().orderBy('stream_seq', 'desc').orderBy('batch_id').limit(limit).offset(offset).execute(),
    base.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
  ]);
  return { items: rows, total: Number(count.n), page, limit };
}
