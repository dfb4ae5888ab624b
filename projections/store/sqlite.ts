import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { LRUCache } from 'lru-cache';
import {
  CompiledQuery,
  Kysely,
  type KyselyPlugin,
  type PluginTransformQueryArgs,
  type PluginTransformResultArgs,
  type QueryResult,
  RawNode,
  type RootOperationNode,
  SqliteDialect,
  type UnknownRow,
} from 'kysely';
import type { WireValue } from '../../domain/protocol/contracts';
import type { Affinity } from '../../domain/protocol/fingerprint';
import { classifyGenericError, type Executor, errorCode, type SqlDialect } from './dialect';
import type { ReadStoreDB } from './schema';
import { type DbValue, decodeForStore, EXACT_MARKER, normalizeRow, sqliteToWire } from './values';

/**
 * better-sqlite3 hands back every integer as bigint (exact); this turns the safe ones into
 * numbers, except for raw queries marked EXACT (mirror rows), where bigint vs number is what
 * tells an INTEGER from a REAL.
 */
class SafeIntegersPlugin implements KyselyPlugin {
  readonly exact = new WeakSet<object>();
  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    const node = args.node;
    if (RawNode.is(node) && node.sqlFragments[0]?.startsWith(EXACT_MARKER)) this.exact.add(args.queryId);
    return node;
  }
  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    if (this.exact.has(args.queryId)) return args.result;
    for (const row of args.result.rows) normalizeRow(row);
    return args.result;
  }
}

// SQLITE_MAX_VARIABLE_NUMBER of the SQLite bundled with better-sqlite3.
const MAX_PARAMS = 32_766;
const STATEMENT_CACHE = 128;

const TRANSIENT = /^SQLITE_(BUSY|LOCKED|IOERR|FULL|NOMEM|CANTOPEN|PROTOCOL|INTERRUPT)/;

// SQLite is dynamically typed: the value is bound with its own storage class (INTEGER as bigint,
// REAL as a JS number, -0 and ±Infinity included) and the column's affinity does to it exactly
// what it did on the device, whose column has the same affinity.
export function bindSqliteValue(_affinity: Affinity, v: WireValue): DbValue {
  const d = decodeForStore(v);
  return d instanceof Uint8Array && !Buffer.isBuffer(d) ? Buffer.from(d) : (d as DbValue);
}

export function createSqliteStore(path: string): {
  db: Kysely<ReadStoreDB>;
  dialect: SqlDialect;
  close: () => Promise<void>;
} {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const raw = new Database(path);
  raw.pragma('journal_mode = WAL');
  // Readers (the API) and the projector share the file: wait for a lock rather than fail at once.
  raw.pragma('busy_timeout = 5000');
  raw.pragma('synchronous = NORMAL');
  raw.defaultSafeIntegers(true);
  const safeIntegers = new SafeIntegersPlugin();
  const db = new Kysely<ReadStoreDB>({
    dialect: new SqliteDialect({ database: raw }),
    plugins: [safeIntegers],
  });

  const cache = new LRUCache<string, Database.Statement>({ max: STATEMENT_CACHE });
  const prepare = (text: string): Database.Statement => {
    let stmt = cache.get(text);
    if (!stmt) cache.set(text, (stmt = raw.prepare(text)));
    return stmt;
  };

  const dialect: SqlDialect = {
    kind: 'sqlite',
    maxParams: MAX_PARAMS,
    rowLocks: false,
    columnType: (a) => a,
    placeholder: () => '?',
    bindValue: bindSqliteValue,
    async execExact(ex: Executor, text, params) {
      const marked = `${EXACT_MARKER} ${text}`;
      if (!ex.isTransaction) {
        const query = CompiledQuery.raw(marked, [...params]);
        safeIntegers.exact.add(query.queryId);
        const r = await ex.executeQuery(query);
        return r.rows as Record<string, unknown>[];
      }
      return prepare(marked).all(...params) as Record<string, unknown>[];
    },
    toWire: (_affinity, v) => sqliteToWire(v),
    async exec(ex: Executor, text, params) {
      // Inside a transaction this flow owns SQLite's single connection (Kysely's mutex), so the
      // cached statement runs in that transaction. Outside one, go through Kysely and its mutex.
      if (!ex.isTransaction) {
        const r = await ex.executeQuery(CompiledQuery.raw(text, [...params]));
        return r.rows as Record<string, unknown>[];
      }
      const stmt = prepare(text);
      if (stmt.reader) return (stmt.all(...params) as Record<string, unknown>[]).map(normalizeRow);
      stmt.run(...params);
      return [];
    },
    classifyError(err) {
      const code = errorCode(err);
      if (code?.startsWith('SQLITE_')) return TRANSIENT.test(code) ? 'transient' : 'permanent';
      if (err instanceof RangeError) return 'permanent'; // a value better-sqlite3 cannot bind
      return classifyGenericError(err);
    },
    isMissingTable: (err) => err instanceof Error && /no such table/i.test(err.message),
    async listTables(ex) {
      const rows = await dialect.exec(
        ex,
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
        [],
      );
      return rows.map((r) => String(r.name));
    },
  };
  return {
    db,
    dialect,
    close: async () => {
      cache.clear();
      await db.destroy();
    },
  };
}
