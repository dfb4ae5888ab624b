/**
 * Read queries of registry coalescing (SPEC §4.6, §7): registry entries, registry reviews,
 * coalesced mirror tables and devices with their fleets. Same rules as `queries.ts`: scoped to
 * one project, paged with `page`/`limit`.
 */
import { type Kysely, sql } from 'kysely';
import type { MirrorColumn } from '../mirror/columns';
import { quoteIdent } from './identifiers';
import { type Page, type PageQuery, paging } from './page';
import type { EdgeRegistryReviewsTable, ReadStoreDB } from './schema';

type Db = Kysely<ReadStoreDB>;

const json = <T>(text: string | null): T | null => (text === null ? null : (JSON.parse(text) as T));

export type RegistryEntryView = Readonly<{
  registry_id: string;
  project_id: string;
  scope: 'project' | 'fleet';
  scope_id: string;
  source_table: string;
  schema_hash: string;
  status: 'pending' | 'approved' | 'rejected';
  review_id: string | null;
  adopted_from: string | null;
  reason: string | null;
  enrolled_lineages: number;
  /** Lineages materializing under the entry now (read from the lineages projection). */
  coalesced_lineages: number;
  schema_columns: unknown;
  bindings: unknown;
  created_at: string;
  updated_at: string;
}>;

export type RegistryQuery = PageQuery &
  Readonly<{
    project_id: string;
    status?: RegistryEntryView['status'];
    source_table?: string;
    scope?: 'project' | 'fleet';
    fleet_id?: string;
  }>;

export async function listRegistry(db: Db, q: RegistryQuery): Promise<Page<RegistryEntryView>> {
  const { page, limit, offset } = paging(q);
  const base = db
    .selectFrom('edge_schema_registry')
    .where('project_id', '=', q.project_id)
    .$if(q.status !== undefined, (b) => b.where('status', '=', q.status!))
    .$if(q.source_table !== undefined, (b) => b.where('source_table', '=', q.source_table!))
    .$if(q.scope !== undefined, (b) => b.where('scope', '=', q.scope!))
    .$if(q.fleet_id !== undefined, (b) => b.where('scope', '=', 'fleet').where('scope_id', '=', q.fleet_id!));
  const [rows, count] = await Promise.all([
    base.selectAll().orderBy('created_at').orderBy('registry_id').limit(limit).offset(offset).execute(),
    base.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
  ]);
  const ids = rows.map((r) => r.registry_id);
  const counts = ids.length
    ? await db
        .selectFrom('edge_table_lineages')
        .select(['registry_id', (eb) => eb.fn.countAll<number>().as('n')])
        .where('project_id', '=', q.project_id)
        .where('registry_state', '=', 'coalesced')
        .where('status', '!=', 'deleted')
        .where('registry_id', 'in', ids)
        .groupBy('registry_id')
        .execute()
    : [];
  const coalesced = new Map(counts.map((c) => [c.registry_id, Number(c.n)]));
  return {
    items: rows.map((r) => ({
      ...r,
      enrolled_lineages: Number(r.enrolled_lineages),
      coalesced_lineages: coalesced.get(r.registry_id) ?? 0,
      schema_columns: json(r.schema_columns),
      bindings: json(r.bindings),
    })),
    total: Number(count.n),
    page,
    limit,
  };
}

export type RegistryReviewView = EdgeRegistryReviewsTable & Readonly<{ schema_columns: unknown }>;

export type RegistryReviewQuery = PageQuery &
  Readonly<{
    project_id: string;
    status?: EdgeRegistryReviewsTable['status'];
    registry_id?: string;
    source_table?: string;
    fleet_id?: string;
  }>;

export async function listRegistryReviews(db: Db, q: RegistryReviewQuery): Promise<Page<RegistryReviewView>> {
  const { page, limit, offset } = paging(q);
  const base = db
    .selectFrom('edge_registry_reviews as r')
    .leftJoin('edge_schema_registry as e', 'e.registry_id', 'r.registry_id')
    .where('r.project_id', '=', q.project_id)
    .$if(q.status !== undefined, (b) => b.where('r.status', '=', q.status!))
    .$if(q.registry_id !== undefined, (b) => b.where('r.registry_id', '=', q.registry_id!))
    .$if(q.source_table !== undefined, (b) => b.where('r.source_table', '=', q.source_table!))
    .$if(q.fleet_id !== undefined, (b) =>
      b.where('r.scope', '=', 'fleet').where('r.scope_id', '=', q.fleet_id!),
    );
  const [rows, count] = await Promise.all([
    base
      .selectAll('r')
      .select('e.schema_columns')
      .orderBy('r.created_at')
      .orderBy('r.review_id')
      .limit(limit)
      .offset(offset)
      .execute(),
    base.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
  ]);
  return {
    items: rows.map((r) => ({ ...r, schema_columns: json(r.schema_columns ?? null) })),
    total: Number(count.n),
    page,
    limit,
  };
}

export async function getRegistryReview(
  db: Db,
  projectId: string,
  reviewId: string,
): Promise<RegistryReviewView | null> {
  const r = await db
    .selectFrom('edge_registry_reviews as r')
    .leftJoin('edge_schema_registry as e', 'e.registry_id', 'r.registry_id')
    .selectAll('r')
    .select('e.schema_columns')
    .where('r.project_id', '=', projectId)
    .where('r.review_id', '=', reviewId)
    .executeTakeFirst();
  return r ? { ...r, schema_columns: json(r.schema_columns ?? null) } : null;
}

export type CoalescedMirrorView = Readonly<{
  table_name: string;
  scope: 'project' | 'fleet';
  scope_id: string;
  source_table: string;
  generation: number;
  /** Registry entries (schema hashes) that write to the table. */
  entries: { registry_id: string; schema_hash: string }[];
  /** Lineages (one per device) materializing into the table. */
  lineages: number;
  rows: number;
  columns: { name: string; column: string; affinity: string; pk_ordinal: number }[];
  created_at: string;
  updated_at: string;
}>;

export async function listCoalescedMirrors(
  db: Db,
  q: PageQuery & Readonly<{ project_id: string; source_table?: string; fleet_id?: string }>,
): Promise<Page<CoalescedMirrorView>> {
  const { page, limit, offset } = paging(q);
  const base = db
    .selectFrom('edge_mirror_coalesced_tables')
    .where('project_id', '=', q.project_id)
    .$if(q.source_table !== undefined, (b) => b.where('source_table', '=', q.source_table!))
    .$if(q.fleet_id !== undefined, (b) => b.where('scope', '=', 'fleet').where('scope_id', '=', q.fleet_id!));
  const [rows, count] = await Promise.all([
    base.selectAll().orderBy('created_at').orderBy('table_name').limit(limit).offset(offset).execute(),
    base.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
  ]);
  const items: CoalescedMirrorView[] = [];
  for (const t of rows) {
    const [entries, members, n] = await Promise.all([
      db
        .selectFrom('edge_mirror_coalesced_entries')
        .select(['registry_id', 'schema_hash'])
        .where('table_name', '=', t.table_name)
        .orderBy('created_at')
        .execute(),
      db
        .selectFrom('edge_mirror_coalesced_members')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('table_name', '=', t.table_name)
        .executeTakeFirstOrThrow(),
      sql<{
        n: number | bigint | string;
      }>`SELECT COUNT(*) AS n FROM ${sql.raw(quoteIdent(t.table_name))}`.execute(db),
    ]);
    items.push({
      table_name: t.table_name,
      scope: t.scope,
      scope_id: t.scope_id,
      source_table: t.source_table,
      generation: t.generation,
      entries,
      lineages: Number(members.n),
      rows: Number(n.rows[0]?.n ?? 0),
      columns: (JSON.parse(t.columns) as MirrorColumn[]).map((c) => ({
        name: c.target,
        column: c.name,
        affinity: c.affinity,
        pk_ordinal: c.key,
      })),
      created_at: t.created_at,
      updated_at: t.updated_at,
    });
  }
  return { items, total: Number(count.n), page, limit };
}

export type DeviceView = Readonly<{
  device_id: string;
  device_name: string;
  fleet_id: string | null;
  lineages: number;
  /** The last batch of any of its lineages; null before the first. */
  last_seen_at: string | null;
}>;

/** Devices as their lineages know them (every device that sent a batch), with their fleet. */
export async function listDevices(
  db: Db,
  q: PageQuery & Readonly<{ project_id: string; fleet_id?: string }>,
): Promise<Page<DeviceView>> {
  const { page, limit, offset } = paging(q);
  const base = db
    .selectFrom('edge_table_lineages')
    .where('project_id', '=', q.project_id)
    .where('status', '!=', 'deleted')
    .$if(q.fleet_id !== undefined, (b) => b.where('fleet_id', '=', q.fleet_id!));
  const [rows, count] = await Promise.all([
    base
      .select([
        'device_id',
        'device_name',
        (eb) => eb.fn.max('fleet_id').as('fleet_id'),
        (eb) => eb.fn.countAll<number>().as('n'),
        (eb) => eb.fn.max('last_batch_at').as('last_seen_at'),
      ])
      .groupBy(['device_id', 'device_name'])
      .orderBy('device_name')
      .orderBy('device_id')
      .limit(limit)
      .offset(offset)
      .execute(),
    db
      .selectFrom(base.select('device_id').distinct().as('d'))
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow(),
  ]);
  return {
    items: rows.map((r) => ({
      device_id: r.device_id,
      device_name: r.device_name,
      fleet_id: (r.fleet_id as string | null) ?? null,
      lineages: Number(r.n),
      last_seen_at: (r.last_seen_at as string | null) ?? null,
    })),
    total: Number(count.n),
    page,
    limit,
  };
}
