import type { Kysely, Migration } from 'kysely';

/**
 * `edge_ts_coalesced_tables`: the coalesced telemetry tables (`edge_ts_p…` / `edge_ts_f…`) with
 * every column any entry of the scope binds; `edge_data_points`: the data points approvals
 * created (docs/telemetry.md); `edge_table_lineages.pause_details`: what a pause said.
 */
export const telemetryReadsMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('edge_ts_coalesced_tables')
      .addColumn('table_name', 'text', (c) => c.primaryKey())
      .addColumn('project_id', 'text', (c) => c.notNull())
      .addColumn('scope', 'text', (c) => c.notNull())
      .addColumn('scope_id', 'text', (c) => c.notNull())
      .addColumn('source_table', 'text', (c) => c.notNull())
      .addColumn('columns', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('edge_data_points')
      .addColumn('lineage_id', 'text', (c) => c.notNull())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('project_id', 'text', (c) => c.notNull())
      .addColumn('device_id', 'text', (c) => c.notNull())
      .addColumn('device_name', 'text', (c) => c.notNull())
      .addColumn('source_table', 'text', (c) => c.notNull())
      .addColumn('source_column', 'text', (c) => c.notNull())
      .addColumn('affinity', 'text', (c) => c.notNull())
      .addColumn('action', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('edge_data_points_pk', ['lineage_id', 'name'])
      .execute();
    // Why a lineage is paused, by reason, when the decision said (JSON object; null: nothing said).
    await db.schema.alterTable('edge_table_lineages').addColumn('pause_details', 'text').execute();
  },
  async down(db: Kysely<unknown>) {
    await db.schema.alterTable('edge_table_lineages').dropColumn('pause_details').execute();
    await db.schema.dropTable('edge_data_points').ifExists().execute();
    await db.schema.dropTable('edge_ts_coalesced_tables').ifExists().execute();
  },
};
