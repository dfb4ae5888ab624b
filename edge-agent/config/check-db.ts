import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { checkTableConfig } from '../capture/filter';
import { readTableSchema } from '../capture/schema';
import type { AgentConfig, ConfigProblem } from './load';

/**
 * The checks of `sluice-agent validate` that need the application database: each table's filters
 * and ts_column against its schema (capture/filter.ts checkTableConfig). The database is opened
 * read-only; nothing is written to it.
 */
export function checkAgainstDatabase(config: AgentConfig): {
  problems: ConfigProblem[];
  warnings: ConfigProblem[];
} {
  const problems: ConfigProblem[] = [];
  const warnings: ConfigProblem[] = [];
  const path = config.replication.sourceDbPath;
  const checked = Object.entries(config.replication.tableStrategies).filter(
    ([, s]) => s.strategy !== 'ignore' && (s.filter !== undefined || s.strategy === 'telemetry'),
  );
  if (checked.length === 0) return { problems, warnings };
  if (!existsSync(path)) {
    warnings.push({
      path: 'sqlite-replication.source_db_path',
      message: `${path} does not exist yet: filters and ts_column were not checked against the database`,
    });
    return { problems, warnings };
  }
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    for (const [table, s] of checked) {
      const where = `sqlite-replication.table_strategies.${table}`;
      const schema = readTableSchema(db, table);
      if (!schema) {
        (s.strategy === 'telemetry' ? problems : warnings).push({
          path: where,
          message: `${path} has no table ${table}: its ${s.strategy === 'telemetry' ? 'ts_column and ' : ''}filters were not checked`,
        });
        continue;
      }
      for (const p of checkTableConfig(db, schema, s)) {
        problems.push({ path: `${where}.${p.field}`, message: p.message });
      }
    }
  } finally {
    db.close();
  }
  return { problems, warnings };
}
