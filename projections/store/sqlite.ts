import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import {
  CompiledQuery,
  Kysely,
  type KyselyPlugin,
  type PluginTransformQueryArgs,
  type PluginTransformResultArgs,
  type QueryResult,
  type RootOperationNode,
  SqliteDialect,
  type UnknownRow,
} from 'kysely';
import type { WireValue } from '../../domain/protocol/contracts';
import type { Affinity } from '../../domain/protocol/fingerprint';
import { classifyGenericError, type Executor, errorCode, type SqlDialect } from './dialect';
import type { ReadStoreDB } from './schema';
import {
  type DbValue,
  decodeBlob,
  decodeInt,
  inInt64,
  isWireBlob,
  isWireInt,
  MaterializationError,
  normalizeRow,
} from './values';

/** better-sqlite3 hands back every integer as bigint (exact); this turns the safe ones into numbers. */
class SafeIntegersPlugin implements KyselyPlugin {
  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    return args.node;
  }
  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    for (const row of args.result.rows) normalizeRow(row);
    return args.result;
  }
}

// SQLITE_MAX_VARIABLE_NUMBER of the SQLite bundled with better-sqlite3.
const MAX_PARAMS = 32_766;
const STATEMENT_CACHE = 128;

const TRANSIENT = /^SQLITE_(BUSY|LOCKED|IOERR|FULL|NOMEM|CANTOPEN|PROTOCOL|INTERRUPT)/;

function bindValue(affinity: Affinity, v: WireValue): DbValue {
  if (v === null) return null;
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (isWireBlob(v)) return decodeBlob(v);
  if (isWireInt(v)) {
    const n = decodeInt(v);
    if (inInt64(n)) return n;
    // SQLite would silently turn it into an approximate REAL: refuse instead of losing digits.
    if (affinity === 'INTEGER') {
      throw new MaterializationError('integer_out_of_range', `${v.$int} does not fit a 64-bit integer`);
    }
    return v.$int;
  }
  return v;
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
  const db = new Kysely<ReadStoreDB>({
    dialect: new SqliteDialect({ database: raw }),
    plugins: [new SafeIntegersPlugin()],
  });

  const cache = new Map<string, Database.Statement>();
  const prepare = (text: string): Database.Statement => {
    let stmt = cache.get(text);
    if (stmt) {
      cache.delete(text); // re-insert: the Map's order is the recency order
    } else {
      stmt = raw.prepare(text);
      if (cache.size >= STATEMENT_CACHE) cache.delete(cache.keys().next().value!);
    }
    cache.set(text, stmt);
    return stmt;
  };

  const dialect: SqlDialect = {
    kind: 'sqlite',
    maxParams: MAX_PARAMS,
    rowLocks: false,
    columnType: (a) => a,
    placeholder: () => '?',
    bindValue,
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
