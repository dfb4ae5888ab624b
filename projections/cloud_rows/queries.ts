import type { Kysely } from 'kysely';
import type { WireValue } from '../../domain/protocol/contracts';
import type { ReadStoreDB } from '../store/schema';

export type CloudRowView = Readonly<{
  pk: Record<string, WireValue>;
  values: Record<string, WireValue>;
  cloud_version: number;
  control_id: string | null;
  written_at: string;
  /** `applied` once the device reported an lkcv of at least cloud_version for the key. */
  status: 'pending' | 'applied';
  device_version: number | null;
  confirmed_at: string | null;
  conflicts: number;
  last_conflict_at: string | null;
}>;

/** A lineage's cloud rows by key (the caller checked the lineage's project and device). */
export async function listCloudRows(
  db: Kysely<ReadStoreDB>,
  q: { lineage_id: string; page?: number; limit?: number },
): Promise<{
  authority: 'cloud_authoritative' | 'device_authoritative';
  last_cloud_version: number;
  items: CloudRowView[];
  total: number;
  page: number;
  limit: number;
}> {
  const limit = Math.min(Math.max(q.limit ?? 50, 1), 500);
  const page = Math.max(q.page ?? 1, 1);
  const [lineage, rows, count] = await Promise.all([
    db
      .selectFrom('edge_cloud_lineages')
      .selectAll()
      .where('lineage_id', '=', q.lineage_id)
      .executeTakeFirst(),
    db
      .selectFrom('edge_cloud_rows')
      .selectAll()
      .where('lineage_id', '=', q.lineage_id)
      .orderBy('pk_key')
      .limit(limit)
      .offset((page - 1) * limit)
      .execute(),
    db
      .selectFrom('edge_cloud_rows')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('lineage_id', '=', q.lineage_id)
      .executeTakeFirstOrThrow(),
  ]);
  return {
    authority: lineage?.authority ?? 'device_authoritative',
    last_cloud_version: Number(lineage?.last_cloud_version ?? 0),
    items: rows.map((r) => ({
      pk: JSON.parse(r.pk) as Record<string, WireValue>,
      values: JSON.parse(r.row_values) as Record<string, WireValue>,
      cloud_version: Number(r.cloud_version),
      control_id: r.control_id,
      written_at: r.written_at,
      status:
        r.device_version !== null && Number(r.device_version) >= Number(r.cloud_version)
          ? 'applied'
          : 'pending',
      device_version: r.device_version === null ? null : Number(r.device_version),
      confirmed_at: r.confirmed_at,
      conflicts: Number(r.conflicts),
      last_conflict_at: r.last_conflict_at,
    })),
    total: Number(count.n),
    page,
    limit,
  };
}
