/**
 * Schema changes of the read store's static tables, as in-code Kysely migrations: the same code
 * on SQLite and PostgreSQL (only portable types: text, integer, bigint). Dynamic tables are
 * created by their projections. Add a new migration for every change; never edit a shipped one.
 */
import { type Kysely, type Migration, type MigrationProvider, Migrator } from 'kysely';
import { cloudRowsMigration } from '../cloud_rows/migration';
import { telemetryReadsMigration } from '../telemetry/migration';
import type { ReadStore } from './open';

type Db = Kysely<unknown>;

/** Columns every per-projection identity table has (see `LineageIdentityTable`). */
function identityTable(db: Db, name: string) {
  return db.schema
    .createTable(name)
    .addColumn('lineage_id', 'text', (c) => c.primaryKey())
    .addColumn('project_id', 'text', (c) => c.notNull())
    .addColumn('device_id', 'text', (c) => c.notNull())
    .addColumn('device_name', 'text', (c) => c.notNull())
    .addColumn('source_table', 'text', (c) => c.notNull())
    .addColumn('kind', 'text', (c) => c.notNull());
}

function heldReplays(db: Db, name: string) {
  return db.schema
    .createTable(name)
    .addColumn('replay_id', 'text', (c) => c.primaryKey())
    .addColumn('lineage_id', 'text', (c) => c.notNull())
    .addColumn('stream_seq', 'bigint', (c) => c.notNull())
    .addColumn('rows', 'bigint', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('released_at', 'text', (c) => c.notNull())
    .addColumn('completed_at', 'text');
}

const initial: Migration = {
  async up(db: Db) {
    await db.schema
      .createTable('projection_checkpoints')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('position', 'bigint', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();

    // ------------------------------------------------------------ lineages
    await db.schema
      .createTable('edge_table_lineages')
      .addColumn('lineage_id', 'text', (c) => c.primaryKey())
      .addColumn('project_id', 'text', (c) => c.notNull())
      .addColumn('device_id', 'text', (c) => c.notNull())
      .addColumn('device_name', 'text', (c) => c.notNull())
      .addColumn('source_table', 'text', (c) => c.notNull())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('pause_reasons', 'text', (c) => c.notNull())
      .addColumn('current_schema_hash', 'text')
      .addColumn('approved_schema_hash', 'text')
      .addColumn('staged_rows', 'bigint', (c) => c.notNull())
      .addColumn('replaying_rows', 'bigint', (c) => c.notNull())
      .addColumn('materialized_rows', 'bigint', (c) => c.notNull())
      .addColumn('duplicates_skipped', 'bigint', (c) => c.notNull())
      .addColumn('journal_epochs', 'text', (c) => c.notNull())
      .addColumn('last_journal_epoch', 'text')
      .addColumn('last_commit_seq', 'bigint')
      .addColumn('last_batch_seq', 'bigint')
      .addColumn('replay_id', 'text')
      .addColumn('replay_state', 'text', (c) => c.notNull())
      .addColumn('materialization_errors', 'bigint', (c) => c.notNull())
      .addColumn('last_error', 'text')
      .addColumn('deleted_reason', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex('edge_table_lineages_project')
      .on('edge_table_lineages')
      .columns(['project_id', 'created_at', 'lineage_id'])
      .execute();
    await db.schema
      .createIndex('edge_table_lineages_device')
      .on('edge_table_lineages')
      .columns(['project_id', 'device_id'])
      .execute();
    await db.schema
      .createIndex('edge_table_lineages_device_name')
      .on('edge_table_lineages')
      .columns(['project_id', 'device_name'])
      .execute();

    await db.schema
      .createTable('edge_schema_versions')
      .addColumn('lineage_id', 'text', (c) => c.notNull())
      .addColumn('schema_hash', 'text', (c) => c.notNull())
      .addColumn('project_id', 'text', (c) => c.notNull())
      .addColumn('classification', 'text', (c) => c.notNull())
      .addColumn('schema_columns', 'text')
      .addColumn('first_seen_at', 'text', (c) => c.notNull())
      .addColumn('last_seen_at', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('edge_schema_versions_pk', ['lineage_id', 'schema_hash'])
      .execute();

    await db.schema
      .createTable('edge_schema_reviews')
      .addColumn('review_id', 'text', (c) => c.primaryKey())
      .addColumn('lineage_id', 'text', (c) => c.notNull())
      .addColumn('project_id', 'text', (c) => c.notNull())
      .addColumn('device_id', 'text', (c) => c.notNull())
      .addColumn('source_table', 'text', (c) => c.notNull())
      .addColumn('schema_hash', 'text', (c) => c.notNull())
      .addColumn('classification', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('action_version', 'integer', (c) => c.notNull())
      .addColumn('reason', 'text')
      .addColumn('claimed_by', 'text')
      .addColumn('decided_by', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('claimed_at', 'text')
      .addColumn('decided_at', 'text')
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex('edge_schema_reviews_project')
      .on('edge_schema_reviews')
      .columns(['project_id', 'status', 'created_at'])
      .execute();
    await db.schema
      .createIndex('edge_schema_reviews_lineage')
      .on('edge_schema_reviews')
      .columns(['lineage_id'])
      .execute();

    await db.schema
      .createTable('edge_column_bindings')
      .addColumn('lineage_id', 'text', (c) => c.notNull())
      .addColumn('column_name', 'text', (c) => c.notNull())
      .addColumn('project_id', 'text', (c) => c.notNull())
      .addColumn('review_id', 'text', (c) => c.notNull())
      .addColumn('schema_hash', 'text', (c) => c.notNull())
      .addColumn('ordinal', 'integer', (c) => c.notNull())
      .addColumn('action', 'text', (c) => c.notNull())
      .addColumn('target', 'text')
      .addColumn('affinity', 'text', (c) => c.notNull())
      .addColumn('pk_ordinal', 'integer', (c) => c.notNull())
      .addColumn('not_null', 'integer', (c) => c.notNull())
      .addColumn('approved_at', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('edge_column_bindings_pk', ['lineage_id', 'column_name'])
      .execute();

    await db.schema
      .createTable('edge_replay_intents')
      .addColumn('replay_id', 'text', (c) => c.primaryKey())
      .addColumn('lineage_id', 'text', (c) => c.notNull())
      .addColumn('project_id', 'text', (c) => c.notNull())
      .addColumn('schema_hash', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('staged_rows', 'bigint', (c) => c.notNull())
      .addColumn('completed_rows', 'bigint')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('completed_at', 'text')
      .execute();
    await db.schema
      .createIndex('edge_replay_intents_lineage')
      .on('edge_replay_intents')
      .columns(['lineage_id', 'created_at'])
      .execute();

    // ------------------------------------------------------------ staged_rows
    await db.schema
      .createTable('edge_staged_rows')
      .addColumn('lineage_id', 'text', (c) => c.notNull())
      .addColumn('project_id', 'text', (c) => c.notNull())
      .addColumn('device_id', 'text', (c) => c.notNull())
      .addColumn('source_table', 'text', (c) => c.notNull())
      .addColumn('journal_epoch', 'text', (c) => c.notNull())
      .addColumn('commit_seq', 'bigint', (c) => c.notNull())
      .addColumn('op', 'text', (c) => c.notNull())
      .addColumn('pk', 'text', (c) => c.notNull())
      .addColumn('pk_hash', 'text', (c) => c.notNull())
      .addColumn('row', 'text')
      .addColumn('reason', 'text', (c) => c.notNull())
      .addColumn('batch_id', 'text')
      .addColumn('schema_hash', 'text')
      .addColumn('staged_at', 'text', (c) => c.notNull())
      // The keyset of the staged-rows API: (lineage, commit_seq) first, the epoch breaks ties.
      .addPrimaryKeyConstraint('edge_staged_rows_pk', ['lineage_id', 'commit_seq', 'journal_epoch'])
      .execute();
    await identityTable(db, 'edge_staged_lineages').execute();

    // ------------------------------------------------------------ segments
    await db.schema
      .createTable('edge_export_segments')
      .addColumn('lineage_id', 'text', (c) => c.notNull())
      .addColumn('batch_id', 'text', (c) => c.notNull())
      .addColumn('project_id', 'text', (c) => c.notNull())
      .addColumn('device_id', 'text', (c) => c.notNull())
      .addColumn('source_table', 'text', (c) => c.notNull())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('journal_epoch', 'text')
      .addColumn('batch_seq', 'bigint')
      .addColumn('first_commit_seq', 'bigint')
      .addColumn('last_commit_seq', 'bigint')
      .addColumn('rows', 'bigint', (c) => c.notNull())
      .addColumn('duplicates', 'bigint', (c) => c.notNull())
      .addColumn('disposition', 'text', (c) => c.notNull())
      .addColumn('reason', 'text')
      .addColumn('schema_hash', 'text', (c) => c.notNull())
      .addColumn('received_at', 'text', (c) => c.notNull())
      .addColumn('stream_seq', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('edge_export_segments_pk', ['lineage_id', 'batch_id'])
      .execute();
    await db.schema
      .createIndex('edge_export_segments_project')
      .on('edge_export_segments')
      .columns(['project_id', 'stream_seq'])
      .execute();
    await identityTable(db, 'edge_segment_lineages').execute();

    // ------------------------------------------------------------ controls
    await db.schema
      .createTable('edge_pending_controls')
      .addColumn('control_id', 'text', (c) => c.primaryKey())
      .addColumn('lineage_id', 'text', (c) => c.notNull())
      .addColumn('project_id', 'text', (c) => c.notNull())
      .addColumn('device_id', 'text', (c) => c.notNull())
      .addColumn('device_name', 'text', (c) => c.notNull())
      .addColumn('source_table', 'text', (c) => c.notNull())
      .addColumn('control_kind', 'text', (c) => c.notNull())
      .addColumn('server_watermark', 'bigint', (c) => c.notNull())
      .addColumn('reason', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('deliveries', 'integer', (c) => c.notNull())
      .addColumn('issued_at', 'text', (c) => c.notNull())
      .addColumn('last_delivered_at', 'text')
      .addColumn('acknowledged_at', 'text')
      .execute();
    await db.schema
      .createIndex('edge_pending_controls_project')
      .on('edge_pending_controls')
      .columns(['project_id', 'status', 'issued_at'])
      .execute();
    await identityTable(db, 'edge_control_lineages').execute();

    // ------------------------------------------------------------ rejections
    await db.schema
      .createTable('edge_rejections')
      .addColumn('stream_seq', 'bigint', (c) => c.primaryKey())
      .addColumn('project_id', 'text')
      .addColumn('device_key', 'text', (c) => c.notNull())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('topic', 'text', (c) => c.notNull())
      .addColumn('code', 'text', (c) => c.notNull())
      .addColumn('message', 'text', (c) => c.notNull())
      .addColumn('received_at', 'text', (c) => c.notNull())
      .addColumn('payload_excerpt', 'text')
      .execute();
    await db.schema
      .createIndex('edge_rejections_project')
      .on('edge_rejections')
      .columns(['project_id', 'stream_seq'])
      .execute();

    // ------------------------------------------------------------ mirror
    await identityTable(db, 'edge_mirror_lineages')
      .addColumn('materialization_errors', 'bigint', (c) => c.notNull())
      .addColumn('failed_rows', 'bigint', (c) => c.notNull())
      .addColumn('last_error', 'text')
      .addColumn('last_error_at', 'text')
      .execute();
    await db.schema
      .createTable('edge_mirror_tables')
      .addColumn('table_name', 'text', (c) => c.primaryKey())
      .addColumn('lineage_id', 'text', (c) => c.notNull())
      .addColumn('project_id', 'text', (c) => c.notNull())
      .addColumn('device_id', 'text', (c) => c.notNull())
      .addColumn('source_table', 'text', (c) => c.notNull())
      .addColumn('generation', 'integer', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('schema_hash', 'text', (c) => c.notNull())
      .addColumn('columns', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex('edge_mirror_tables_lineage')
      .on('edge_mirror_tables')
      .columns(['lineage_id', 'status'])
      .execute();
    await db.schema
      .createTable('edge_mirror_held_rows')
      .addColumn('lineage_id', 'text', (c) => c.notNull())
      .addColumn('journal_epoch', 'text', (c) => c.notNull())
      .addColumn('epoch_ordinal', 'integer', (c) => c.notNull())
      .addColumn('commit_seq', 'bigint', (c) => c.notNull())
      .addColumn('op', 'text', (c) => c.notNull())
      .addColumn('pk', 'text', (c) => c.notNull())
      .addColumn('pk_hash', 'text', (c) => c.notNull())
      .addColumn('row', 'text')
      // Replay order: (epoch_ordinal, commit_seq); the epoch text stays for dedupe and display.
      .addPrimaryKeyConstraint('edge_mirror_held_rows_pk', [
        'lineage_id',
        'epoch_ordinal',
        'commit_seq',
        'journal_epoch',
      ])
      .execute();
    await db.schema
      .createTable('edge_mirror_tombstones')
      .addColumn('lineage_id', 'text', (c) => c.notNull())
      .addColumn('pk_hash', 'text', (c) => c.notNull())
      .addColumn('epoch_ordinal', 'integer', (c) => c.notNull())
      .addColumn('commit_seq', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('edge_mirror_tombstones_pk', ['lineage_id', 'pk_hash'])
      .execute();
    await db.schema
      .createTable('edge_mirror_epochs')
      .addColumn('lineage_id', 'text', (c) => c.notNull())
      .addColumn('journal_epoch', 'text', (c) => c.notNull())
      .addColumn('ordinal', 'integer', (c) => c.notNull())
      .addPrimaryKeyConstraint('edge_mirror_epochs_pk', ['lineage_id', 'journal_epoch'])
      .execute();
    await db.schema
      .createTable('edge_mirror_failures')
      .addColumn('lineage_id', 'text', (c) => c.notNull())
      .addColumn('stream_seq', 'bigint', (c) => c.notNull())
      .addColumn('event_index', 'integer', (c) => c.notNull())
      .addColumn('project_id', 'text', (c) => c.notNull())
      .addColumn('event_type', 'text', (c) => c.notNull())
      .addColumn('code', 'text', (c) => c.notNull())
      .addColumn('message', 'text', (c) => c.notNull())
      .addColumn('failed_rows', 'bigint', (c) => c.notNull())
      .addColumn('sample_keys', 'text', (c) => c.notNull())
      .addColumn('occurred_at', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('edge_mirror_failures_pk', ['lineage_id', 'stream_seq', 'event_index'])
      .execute();
    await heldReplays(db, 'edge_mirror_replays').execute();

    // ------------------------------------------------------------ telemetry
    await identityTable(db, 'edge_ts_lineages')
      .addColumn('materialization_errors', 'bigint', (c) => c.notNull())
      .addColumn('failed_rows', 'bigint', (c) => c.notNull())
      .addColumn('last_error', 'text')
      .addColumn('last_error_at', 'text')
      .addColumn('table_name', 'text')
      .addColumn('schema_hash', 'text')
      .addColumn('columns', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('edge_ts_held_rows')
      .addColumn('lineage_id', 'text', (c) => c.notNull())
      .addColumn('batch_seq', 'bigint', (c) => c.notNull())
      .addColumn('batch_row', 'integer', (c) => c.notNull())
      .addColumn('ts', 'text', (c) => c.notNull())
      .addColumn('row_id', 'text')
      .addColumn('fields', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('edge_ts_held_rows_pk', ['lineage_id', 'batch_seq', 'batch_row'])
      .execute();
    await heldReplays(db, 'edge_ts_replays').execute();
  },
  async down(db: Db) {
    for (const t of [
      'edge_ts_replays',
      'edge_ts_held_rows',
      'edge_ts_lineages',
      'edge_mirror_replays',
      'edge_mirror_failures',
      'edge_mirror_epochs',
      'edge_mirror_tombstones',
      'edge_mirror_held_rows',
      'edge_mirror_tables',
      'edge_mirror_lineages',
      'edge_rejections',
      'edge_control_lineages',
      'edge_pending_controls',
      'edge_segment_lineages',
      'edge_export_segments',
      'edge_staged_lineages',
      'edge_staged_rows',
      'edge_replay_intents',
      'edge_column_bindings',
      'edge_schema_reviews',
      'edge_schema_versions',
      'edge_table_lineages',
      'projection_checkpoints',
    ]) {
      await db.schema.dropTable(t).ifExists().execute();
    }
  },
};

/** How many rows each lineage has in staging, kept with the rows so listing never counts them. */
const stagedCounts: Migration = {
  async up(db: Db) {
    await db.schema
      .createTable('edge_staged_counts')
      .addColumn('lineage_id', 'text', (c) => c.primaryKey())
      .addColumn('row_count', 'bigint', (c) => c.notNull())
      .execute();
  },
  async down(db: Db) {
    await db.schema.dropTable('edge_staged_counts').ifExists().execute();
  },
};

/**
 * Failure reports on their way to the domain: written with the failure, removed when the domain's
 * MaterializationFailed comes back, re-sent on catch-up otherwise (a crash after commit and before
 * the send must not lose the failed rows).
 */
const mirrorReports: Migration = {
  async up(db: Db) {
    await db.schema
      .createTable('edge_mirror_reports')
      .addColumn('lineage_id', 'text', (c) => c.notNull())
      .addColumn('source_seq', 'bigint', (c) => c.notNull())
      .addColumn('journal_epoch', 'text', (c) => c.notNull())
      .addColumn('report', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('edge_mirror_reports_pk', ['lineage_id', 'source_seq', 'journal_epoch'])
      .execute();
  },
  async down(db: Db) {
    await db.schema.dropTable('edge_mirror_reports').ifExists().execute();
  },
};

/**
 * Registry coalescing (SPEC §4.6): the registry projection's entries and reviews, the mirror's
 * coalesced tables with their entries and members, and fleet / registry columns on lineages.
 */
const registryCoalescing: Migration = {
  async up(db: Db) {
    await db.schema.alterTable('edge_table_lineages').addColumn('fleet_id', 'text').execute();
    await db.schema.alterTable('edge_table_lineages').addColumn('registry_id', 'text').execute();
    await db.schema.alterTable('edge_table_lineages').addColumn('registry_state', 'text').execute();
    await db.schema
      .createIndex('edge_table_lineages_fleet')
      .on('edge_table_lineages')
      .columns(['project_id', 'fleet_id'])
      .execute();
    await db.schema
      .createTable('edge_schema_registry')
      .addColumn('registry_id', 'text', (c) => c.primaryKey())
      .addColumn('project_id', 'text', (c) => c.notNull())
      .addColumn('scope', 'text', (c) => c.notNull())
      .addColumn('scope_id', 'text', (c) => c.notNull())
      .addColumn('source_table', 'text', (c) => c.notNull())
      .addColumn('schema_hash', 'text', (c) => c.notNull())
      .addColumn('schema_columns', 'text')
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('review_id', 'text')
      .addColumn('bindings', 'text')
      .addColumn('adopted_from', 'text')
      .addColumn('reason', 'text')
      .addColumn('enrolled_lineages', 'bigint', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex('edge_schema_registry_project')
      .on('edge_schema_registry')
      .columns(['project_id', 'source_table'])
      .execute();
    await db.schema
      .createTable('edge_registry_reviews')
      .addColumn('review_id', 'text', (c) => c.primaryKey())
      .addColumn('registry_id', 'text', (c) => c.notNull())
      .addColumn('project_id', 'text', (c) => c.notNull())
      .addColumn('scope', 'text', (c) => c.notNull())
      .addColumn('scope_id', 'text', (c) => c.notNull())
      .addColumn('source_table', 'text', (c) => c.notNull())
      .addColumn('schema_hash', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('action_version', 'integer', (c) => c.notNull())
      .addColumn('opened_by_lineage', 'text', (c) => c.notNull())
      .addColumn('opened_by_device', 'text', (c) => c.notNull())
      .addColumn('reason', 'text')
      .addColumn('claimed_by', 'text')
      .addColumn('decided_by', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('claimed_at', 'text')
      .addColumn('decided_at', 'text')
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex('edge_registry_reviews_project')
      .on('edge_registry_reviews')
      .columns(['project_id', 'status'])
      .execute();
    await db.schema
      .createTable('edge_mirror_coalesced_tables')
      .addColumn('table_name', 'text', (c) => c.primaryKey())
      .addColumn('project_id', 'text', (c) => c.notNull())
      .addColumn('scope', 'text', (c) => c.notNull())
      .addColumn('scope_id', 'text', (c) => c.notNull())
      .addColumn('source_table', 'text', (c) => c.notNull())
      .addColumn('generation', 'integer', (c) => c.notNull())
      .addColumn('columns', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('edge_mirror_coalesced_entries')
      .addColumn('registry_id', 'text', (c) => c.primaryKey())
      .addColumn('table_name', 'text', (c) => c.notNull())
      .addColumn('project_id', 'text', (c) => c.notNull())
      .addColumn('schema_hash', 'text', (c) => c.notNull())
      .addColumn('columns', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('edge_mirror_coalesced_members')
      .addColumn('lineage_id', 'text', (c) => c.primaryKey())
      .addColumn('registry_id', 'text', (c) => c.notNull())
      .addColumn('table_name', 'text', (c) => c.notNull())
      .addColumn('project_id', 'text', (c) => c.notNull())
      .addColumn('device_id', 'text', (c) => c.notNull())
      .addColumn('joined_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex('edge_mirror_coalesced_members_table')
      .on('edge_mirror_coalesced_members')
      .columns(['table_name', 'device_id'])
      .execute();
  },
  async down(db: Db) {
    for (const t of [
      'edge_mirror_coalesced_members',
      'edge_mirror_coalesced_entries',
      'edge_mirror_coalesced_tables',
      'edge_registry_reviews',
      'edge_schema_registry',
    ]) {
      await db.schema.dropTable(t).ifExists().execute();
    }
    await db.schema.dropIndex('edge_table_lineages_fleet').ifExists().execute();
    for (const c of ['registry_state', 'registry_id', 'fleet_id']) {
      await db.schema.alterTable('edge_table_lineages').dropColumn(c).execute();
    }
  },
};

/**
 * Exact replication (docs/exact-replication.md): refused rows and verify/resync state on
 * lineages, sweeps among staged and held rows, and the mirror's verify runs.
 */
const exactReplication: Migration = {
  async up(db: Db) {
    const lineages = [
      ['refused_rows', 'bigint'],
      ['recent_refusals', 'text'],
      ['last_verify_id', 'text'],
      ['last_verify_status', 'text'],
      ['last_verify_outcome', 'text'],
      ['last_verify_divergent', 'text'],
      ['last_verify_requested_at', 'text'],
      ['last_verify_completed_at', 'text'],
      ['last_resync_id', 'text'],
      ['last_resync_reason', 'text'],
      ['last_resync_buckets', 'text'],
      ['last_resync_at', 'text'],
    ] as const;
    for (const [name, type] of lineages) {
      await db.schema
        .alterTable('edge_table_lineages')
        .addColumn(name, type, (c) =>
          name === 'refused_rows'
            ? c.notNull().defaultTo(0)
            : name === 'recent_refusals'
              ? c.notNull().defaultTo('[]')
              : c,
        )
        .execute();
    }
    await db.schema.alterTable('edge_staged_rows').addColumn('sweep', 'text').execute();
    await db.schema.alterTable('edge_mirror_held_rows').addColumn('sweep', 'text').execute();
    await db.schema
      .createTable('edge_verify_runs')
      .addColumn('lineage_id', 'text', (c) => c.notNull())
      .addColumn('verify_id', 'text', (c) => c.notNull())
      .addColumn('project_id', 'text', (c) => c.notNull())
      .addColumn('outcome', 'text', (c) => c.notNull())
      .addColumn('detail', 'text')
      .addColumn('divergent_buckets', 'text', (c) => c.notNull())
      .addColumn('device_rows', 'bigint', (c) => c.notNull())
      .addColumn('mirror_rows', 'bigint', (c) => c.notNull())
      .addColumn('journal_epoch', 'text', (c) => c.notNull())
      .addColumn('through_commit_seq', 'bigint', (c) => c.notNull())
      .addColumn('schema_hash', 'text', (c) => c.notNull())
      .addColumn('columns', 'text', (c) => c.notNull())
      .addColumn('stream_seq', 'bigint', (c) => c.notNull())
      .addColumn('reported_at', 'text', (c) => c.notNull())
      .addColumn('completed_at', 'text')
      .addColumn('resync_id', 'text')
      .addPrimaryKeyConstraint('edge_verify_runs_pk', ['lineage_id', 'verify_id'])
      .execute();
  },
  async down(db: Db) {
    await db.schema.dropTable('edge_verify_runs').ifExists().execute();
    await db.schema.alterTable('edge_mirror_held_rows').dropColumn('sweep').execute();
    await db.schema.alterTable('edge_staged_rows').dropColumn('sweep').execute();
    for (const c of [
      'refused_rows',
      'recent_refusals',
      'last_verify_id',
      'last_verify_status',
      'last_verify_outcome',
      'last_verify_divergent',
      'last_verify_requested_at',
      'last_verify_completed_at',
      'last_resync_id',
      'last_resync_reason',
      'last_resync_buckets',
      'last_resync_at',
    ]) {
      await db.schema.alterTable('edge_table_lineages').dropColumn(c).execute();
    }
  },
};

/** When a lineage last took in a batch: the device's "last seen" and its schema's. */
const lastSeen: Migration = {
  async up(db: Db) {
    await db.schema.alterTable('edge_table_lineages').addColumn('last_batch_at', 'text').execute();
  },
  async down(db: Db) {
    await db.schema.alterTable('edge_table_lineages').dropColumn('last_batch_at').execute();
  },
};

/** Every migration, by name; names sort in the order they apply. */
export const MIGRATIONS: Readonly<Record<string, Migration>> = {
  '0001_read_stores': initial,
  '0002_staged_counts': stagedCounts,
  '0003_mirror_reports': mirrorReports,
  '0004_registry_coalescing': registryCoalescing,
  '0005_cloud_rows': cloudRowsMigration,
  '0006_exact_replication': exactReplication,
  '0007_last_seen': lastSeen,
  '0008_telemetry_reads': telemetryReadsMigration,
};

const provider: MigrationProvider = { getMigrations: async () => ({ ...MIGRATIONS }) };

/** Bring the static schema up to date. Safe to call from several processes (Kysely's lock table). */
export async function migrate(store: ReadStore): Promise<string[]> {
  const migrator = new Migrator({ db: store.db, provider });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
    throw new Error(
      `read store migration ${failed} failed: ${(error as Error).message ?? String(error)}. ` +
        'Nothing after it was applied; fix the cause and start again.',
      { cause: error },
    );
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
