import { type Page, type PageQuery, paging } from '../page';
import type { Db } from './common';

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
