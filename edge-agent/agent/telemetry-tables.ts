import type Database from 'better-sqlite3';
import type { Logger } from 'pino';
import { checkTableConfig } from '../capture/filter';
import { readTableSchema } from '../capture/schema';
import type { TableStrategyConfig } from '../config/load';

/**
 * Whether a table configured as telemetry can be sent: it exists, has its timestamp column, its
 * filters apply to its schema and it has a rowid (the telemetry cursor). A table that cannot is
 * skipped with the reason logged, and the agent goes on with the others.
 */
export function telemetryTableUsable(
  db: Database.Database,
  log: Logger,
  table: string,
  s: TableStrategyConfig,
): boolean {
  const schema = readTableSchema(db, table);
  if (!schema) {
    log.warn(
      { event: 'table_skipped', table, reason: 'missing' },
      `telemetry table ${table} does not exist; skipped`,
    );
    return false;
  }
  if (!schema.columns.includes(s.timestampColumn!)) {
    log.error(
      { event: 'table_skipped', table, reason: 'no_timestamp_column' },
      `telemetry table ${table} has no column ${s.timestampColumn}; skipped. Fix timestamp_column in the config.`,
    );
    return false;
  }
  const problems = checkTableConfig(db, schema, s);
  if (problems.length > 0) {
    log.error(
      { event: 'table_skipped', table, reason: 'config', problems },
      `telemetry table ${table} is not sent: ${problems.map((p) => `${p.field}: ${p.message}`).join('; ')}. ` +
        'Fix table_strategies in the config (sluice-agent validate checks it against the database).',
    );
    return false;
  }
  const wr = (
    db.prepare('SELECT wr FROM pragma_table_list WHERE schema = ? AND name = ?').get('main', table) as
      { wr: number } | undefined
  )?.wr;
  if (wr === 1) {
    log.error(
      { event: 'table_skipped', table, reason: 'without_rowid' },
      `telemetry table ${table} is WITHOUT ROWID; the telemetry cursor needs a rowid. Use strategy rows.`,
    );
    return false;
  }
  return true;
}
