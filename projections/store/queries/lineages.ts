/** Lineage summaries: one row of `edge_table_lineages` each, as lists and the detail show them. */
import { type Page, type PageQuery, paging } from '../page';
import type { LineageStatus, ReadStoreDB } from '../schema';
import { type Db, json } from './common';

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

export function lineageSummary(r: ReadStoreDB['edge_table_lineages']): LineageSummary {
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
