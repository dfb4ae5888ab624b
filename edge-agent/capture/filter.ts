import Database from 'better-sqlite3';
import { schemaHash, type SchemaColumns } from '../../domain/protocol/fingerprint';
import type { TableSchema } from './schema';
import { quoteIdent } from './sql';

/**
 * The edge filters of one table (docs/agent.md, "Filters"): columns and rows that never leave the
 * device. At most one of `include` / `exclude`; key columns are always sent.
 */
export type TableFilter = Readonly<{
  include?: readonly string[];
  exclude?: readonly string[];
  /** A SQL boolean expression over the table's own columns, evaluated by the agent's SQLite. */
  where?: string;
}>;

/** A problem of a table's filters or ts_column, found against the database. */
export type FilterProblem = Readonly<{
  field: string;
  kind: 'unknown_column' | 'excluded_key' | 'predicate' | 'ts_column';
  message: string;
}>;

/**
 * The checks of a predicate's text that need no database. `;` and comments are refused outright
 * (even inside a string literal: write char(59) for a semicolon), so the text can never end the
 * statement it is placed in or hide the rest of it.
 */
export function checkPredicateText(where: string): string | undefined {
  if (where.trim() === '') return 'must not be empty';
  if (where.includes(';'))
    return 'must be one expression: ";" is not allowed (write char(59) for a semicolon)';
  if (where.includes('--') || where.includes('/*')) return 'must not hold SQL comments (-- or /*)';
  // eslint-disable-next-line no-control-regex -- control characters are what is refused
  if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(where)) return 'must not hold control characters';
  return undefined;
}

const lower = (s: string) => s.toLowerCase();

/**
 * The columns sent, in declaration order: every column but the excluded ones, or the key columns
 * and the included ones. SQLite column names are case-insensitive, and so are these lists.
 */
export function sentColumns(
  columns: readonly string[],
  pk: readonly string[],
  filter: TableFilter | undefined,
): string[] {
  if (!filter) return [...columns];
  const keys = new Set(pk.map(lower));
  if (filter.include) {
    const inc = new Set(filter.include.map(lower));
    return columns.filter((c) => keys.has(lower(c)) || inc.has(lower(c)));
  }
  const exc = new Set((filter.exclude ?? []).map(lower));
  return columns.filter((c) => keys.has(lower(c)) || !exc.has(lower(c)));
}

/** The fingerprint of the columns sent: what schema_hash, schema_columns and a review are about. */
export function filterFingerprint(fp: SchemaColumns, filter: TableFilter | undefined): SchemaColumns {
  if (!filter) return fp;
  const pk = fp.columns.filter((c) => c.pk_ordinal > 0).map((c) => c.name);
  const keep = new Set(
    sentColumns(
      fp.columns.map((c) => c.name),
      pk,
      filter,
    ),
  );
  return { table_name: fp.table_name, columns: fp.columns.filter((c) => keep.has(c.name)) };
}

/**
 * The table as the cloud sees it: the columns sent (with their defaults), the fingerprint and
 * hash over them, and the row predicate. Capture's DDL tracking keeps using the full schema.
 */
export function filterSchema(schema: TableSchema, filter: TableFilter | undefined): TableSchema {
  if (!filter) return schema;
  const keep = new Set(sentColumns(schema.columns, schema.pk, filter));
  const fingerprint = filterFingerprint(schema.fingerprint, filter);
  return {
    ...schema,
    columns: schema.columns.filter((c) => keep.has(c)),
    defaults: schema.defaults.filter((_, i) => keep.has(schema.columns[i]!)),
    fingerprint,
    hash: schemaHash(fingerprint),
    ...(filter.where !== undefined ? { where: filter.where } : {}),
  };
}

/**
 * Check a predicate against the table, with the agent's SQLite:
 * 1. its text (checkPredicateText);
 * 2. `SELECT 1 FROM "t" WHERE (<expr>) LIMIT 0` prepares on `db` (names resolve in this table);
 * 3. it is a valid generated-column expression of a copy of the table in a private in-memory
 *    database, evaluated once on a row: SQLite itself then refuses subqueries (so no other table),
 *    aggregates, window functions, non-deterministic functions (random(), date('now'), changes()…),
 *    functions of the agent's own connection, and qualified names (`t.col`).
 * Returns SQLite's own message when one of them fails.
 */
export function checkPredicate(
  db: Database.Database,
  schema: TableSchema,
  where: string,
): string | undefined {
  const text = checkPredicateText(where);
  if (text) return text;
  try {
    db.prepare(`SELECT 1 FROM ${quoteIdent(schema.name)} WHERE (${where}) LIMIT 0`);
  } catch (err) {
    return `does not prepare as a condition on ${schema.name}: ${(err as Error).message}`;
  }
  const mem = new Database(':memory:');
  try {
    const taken = new Set(schema.fingerprint.columns.map((c) => lower(c.name)));
    let match = '__sluice_match';
    while (taken.has(match)) match += '_';
    const cols = schema.fingerprint.columns.map((c) => `${quoteIdent(c.name)} ${c.decl_type_affinity}`);
    mem
      .prepare(
        `CREATE TABLE ${quoteIdent(schema.name)} (${cols.join(', ')}, ${quoteIdent(match)} ANY GENERATED ALWAYS AS (${where}) VIRTUAL)`,
      )
      .run();
    mem.prepare(`INSERT INTO ${quoteIdent(schema.name)} DEFAULT VALUES`).run();
    mem.prepare(`SELECT ${quoteIdent(match)} FROM ${quoteIdent(schema.name)}`).all();
  } catch (err) {
    return (
      `must be a deterministic expression over the columns of ${schema.name} alone (no subquery, ` +
      `aggregate, qualified name or non-deterministic function): ${(err as Error).message}`
    );
  } finally {
    mem.close();
  }
  return undefined;
}

/**
 * Every problem of one table's filters (and ts_column) against its schema in the database:
 * columns it does not have, excluded key columns, a predicate that does not check, a ts_column
 * that is missing or of a type that cannot hold a time.
 */
export function checkTableConfig(
  db: Database.Database,
  schema: TableSchema,
  cfg: Readonly<{ strategy: string; filter?: TableFilter; timestampColumn?: string }>,
): FilterProblem[] {
  const problems: FilterProblem[] = [];
  const have = new Map(schema.columns.map((c) => [lower(c), c]));
  const f = cfg.filter;
  for (const field of ['include', 'exclude'] as const) {
    const list = f?.[field] ?? [];
    const unknown = list.filter((c) => !have.has(lower(c)));
    if (unknown.length > 0) {
      problems.push({
        field: `${field}_columns`,
        kind: 'unknown_column',
        message: `${schema.name} has no column ${unknown.join(', ')} (it has ${schema.columns.join(', ')})`,
      });
    }
  }
  const keys = new Set(schema.pk.map(lower));
  const excludedKeys = (f?.exclude ?? []).filter((c) => keys.has(lower(c)));
  if (excludedKeys.length > 0) {
    problems.push({
      field: 'exclude_columns',
      kind: 'excluded_key',
      message:
        `${excludedKeys.join(', ')} ${excludedKeys.length > 1 ? 'are' : 'is'} part of the PRIMARY KEY of ` +
        `${schema.name}: key columns are always sent (the cloud keys the mirror by them)`,
    });
  }
  if (f?.where !== undefined) {
    const bad = checkPredicate(db, schema, f.where);
    if (bad) problems.push({ field: 'where', kind: 'predicate', message: bad });
  }
  if (cfg.strategy === 'telemetry' && cfg.timestampColumn !== undefined) {
    const ts = schema.fingerprint.columns.find((c) => lower(c.name) === lower(cfg.timestampColumn!));
    if (!ts) {
      problems.push({
        field: 'ts_column',
        kind: 'ts_column',
        message: `${schema.name} has no column ${cfg.timestampColumn} (it has ${schema.columns.join(', ')})`,
      });
    } else if (ts.decl_type_affinity === 'BLOB') {
      problems.push({
        field: 'ts_column',
        kind: 'ts_column',
        message:
          `${ts.name} is declared BLOB or without a type: a sample time ` +
          'is TEXT (ISO 8601) or a number of Unix seconds or milliseconds (INTEGER, REAL, NUMERIC)',
      });
    }
  }
  return problems;
}

/**
 * What stops a table from being sent at all while the agent runs (fail closed): an excluded key
 * column (after a DDL changed the key) or a predicate that no longer checks (after a DDL dropped
 * a column it names). Unknown listed columns do not: an excluded column that is gone is harmless.
 */
export function withholdingProblems(
  db: Database.Database,
  schema: TableSchema,
  filter: TableFilter,
): FilterProblem[] {
  return checkTableConfig(db, schema, { strategy: 'rows', filter }).filter(
    (p) => p.kind === 'predicate' || p.kind === 'excluded_key',
  );
}
