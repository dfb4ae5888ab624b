import type { Kysely, Migration } from 'kysely';

/** `edge_cloud_rows` and `edge_cloud_lineages`: the cloud's rows and who wins, per lineage. */
export const cloudRowsMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('edge_cloud_rows')
      .addColumn('lineage_id', 'text', (c) => c.notNull())
      .addColumn('pk_key', 'text', (c) => c.notNull())
      .addColumn('pk', 'text', (c) => c.notNull())
      .addColumn('row_values', 'text', (c) => c.notNull())
      .addColumn('cloud_version', 'bigint', (c) => c.notNull())
      .addColumn('control_id', 'text')
      .addColumn('written_at', 'text', (c) => c.notNull())
      .addColumn('device_version', 'bigint')
      .addColumn('confirmed_at', 'text')
      .addColumn('conflicts', 'bigint', (c) => c.notNull())
      .addColumn('last_conflict_at', 'text')
      .addPrimaryKeyConstraint('edge_cloud_rows_pk', ['lineage_id', 'pk_key'])
      .execute();
    await db.schema
      .createTable('edge_cloud_lineages')
      .addColumn('lineage_id', 'text', (c) => c.primaryKey())
      .addColumn('authority', 'text', (c) => c.notNull())
      .addColumn('last_cloud_version', 'bigint', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();
  },
  async down(db: Kysely<unknown>) {
    await db.schema.dropTable('edge_cloud_lineages').ifExists().execute();
    await db.schema.dropTable('edge_cloud_rows').ifExists().execute();
  },
};
