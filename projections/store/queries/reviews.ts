/** Schema reviews, with the columns of the schema under review. */
import { type Page, type PageQuery, paging } from '../page';
import type { ReadStoreDB } from '../schema';
import { type Db, json } from './common';

export type ReviewView = Readonly<
  ReadStoreDB['edge_schema_reviews'] & {
    /** The columns of the schema under review, when the device has sent them. */
    schema_columns: unknown;
  }
>;

export async function reviewViews(db: Db, rows: ReadStoreDB['edge_schema_reviews'][]): Promise<ReviewView[]> {
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
