/** Pending controls, rejections and the batch ledger, as the projections keep them. */
import { type Page, type PageQuery, paging } from '../page';
import type { ReadStoreDB } from '../schema';
import type { Db } from './common';

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
