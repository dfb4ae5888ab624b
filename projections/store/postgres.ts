import { CompiledQuery, Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { WireValue } from '../../domain/protocol/contracts';
import type { Affinity } from '../../domain/protocol/fingerprint';
import { classifyGenericError, type Executor, errorCode, type SqlDialect } from './dialect';
import type { ReadStoreDB } from './schema';
import { encodeSqliteValue, realText } from '../../domain/protocol/wire-values';
import {
  type DbValue,
  decodeForStore,
  MaterializationError,
  normalizeInteger,
  postgresToWire,
} from './values';

const INT8 = 20;
const NUMERIC = 1700;

/** int8/numeric as numbers when exact, bigint when not; the default parsers give strings. */
function typeParser(oid: number, format?: string): (v: string) => unknown {
  if (oid === INT8) return (v) => normalizeInteger(BigInt(v));
  if (oid === NUMERIC) {
    return (v) => (/^-?\d+$/.test(v) ? normalizeInteger(BigInt(v)) : Number(v));
  }
  return pg.types.getTypeParser(oid, (format ?? 'text') as 'text');
}

// SQLSTATE classes that no retry can fix: data exception, integrity violation, syntax or
// undefined object, feature not supported, program limit exceeded.
const PERMANENT_CLASSES = new Set(['22', '23', '42', '0A', '54', '2B', '44']);
const SQLSTATE = /^[0-9A-Z]{5}$/;

const mismatch = (what: string, affinity: Affinity) =>
  new MaterializationError('type_mismatch', `${what} cannot be stored in a ${affinity} column`);

const I64_MIN = -(2 ** 63);
const I64_LIMIT = 2 ** 63;

/**
 * PostgreSQL is typed. INTEGER, REAL and TEXT affinity get bigint, double precision and text;
 * they take the values SQLite's affinity would have turned into their class (an integral REAL
 * into an INTEGER column, an INTEGER into a REAL or TEXT column), so both stores agree. Any other
 * class is a permanent, recorded materialization failure (`type_mismatch`), never a silent
 * re-typing. BLOB and NUMERIC affinity columns can hold every class on SQLite: they are jsonb
 * holding the canonical wire value, which keeps class and value exactly.
 */
export function bindPostgresValue(affinity: Affinity, v: WireValue): DbValue {
  if (v === null) return null;
  const d = decodeForStore(v);
  if (affinity === 'BLOB' || affinity === 'NUMERIC') {
    if (typeof d === 'string' && d.includes('\u0000')) {
      throw mismatch('text with a NUL character (jsonb cannot hold it)', affinity);
    }
    return JSON.stringify(encodeSqliteValue(d));
  }
  const cls = typeof d;
  switch (affinity) {
    case 'INTEGER':
      if (cls === 'bigint') return (d as bigint).toString();
      if (cls === 'number') {
        const n = d as number;
        if (Number.isInteger(n) && n >= I64_MIN && n < I64_LIMIT) return BigInt(n).toString();
        throw mismatch(`the REAL ${realText(n)}`, affinity);
      }
      throw mismatch(cls === 'string' ? 'a TEXT value' : 'a BLOB value', affinity);
    case 'REAL':
      // Bound as text: pg would send -0 as "0"; "-0", "Infinity" and the shortest decimal
      // (String(n)) all parse back to the same double.
      if (cls === 'number') return realText(d as number);
      if (cls === 'bigint') return realText(Number(d as bigint));
      throw mismatch(cls === 'string' ? 'a TEXT value' : 'a BLOB value', affinity);
    case 'TEXT':
      if (cls === 'string') {
        if ((d as string).includes('\u0000')) {
          throw new MaterializationError('type_mismatch', 'PostgreSQL text cannot hold a NUL character');
        }
        return d as string;
      }
      if (cls === 'bigint') return (d as bigint).toString();
      throw mismatch(cls === 'number' ? `the REAL ${realText(d as number)}` : 'a BLOB value', affinity);
  }
}

export function createPostgresStore(
  url: string,
  poolSize = 10,
): { db: Kysely<ReadStoreDB>; dialect: SqlDialect; close: () => Promise<void> } {
  const pool = new pg.Pool({
    connectionString: url,
    max: poolSize,
    types: { getTypeParser: typeParser as typeof pg.types.getTypeParser },
  });
  // A connection that dies (server restart, terminated backend) emits 'error' on its client;
  // unhandled, that would crash the process. The failing query reports the error instead, the
  // pool drops the unusable client, and the projection retries.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));
  const db = new Kysely<ReadStoreDB>({ dialect: new PostgresDialect({ pool }) });
  const dialect: SqlDialect = {
    kind: 'postgres',
    maxParams: 65_535,
    rowLocks: true,
    columnType: (a) => {
      switch (a) {
        case 'INTEGER':
          return 'bigint';
        case 'REAL':
          return 'double precision';
        // Byte order, as SQLite's BINARY collation: keys sort the same on both stores.
        case 'TEXT':
          return 'text COLLATE "C"';
        // Any storage class on SQLite: the canonical wire value (see bindValue).
        case 'BLOB':
        case 'NUMERIC':
          return 'jsonb';
      }
    },
    // bindValue gives text (or null) for every affinity; pg quotes each array element.
    arrayType: (a) =>
      a === 'INTEGER'
        ? 'bigint[]'
        : a === 'REAL'
          ? 'double precision[]'
          : a === 'TEXT'
            ? 'text[]'
            : 'jsonb[]',
    placeholder: (i) => `$${i}`,
    bindValue: bindPostgresValue,
    execExact: (ex: Executor, text, params) => dialect.exec(ex, text, params),
    toWire: postgresToWire,
    async exec(ex: Executor, text, params) {
      const r = await ex.executeQuery(CompiledQuery.raw(text, [...params]));
      return r.rows as Record<string, unknown>[];
    },
    classifyError(err) {
      const code = errorCode(err);
      if (code && SQLSTATE.test(code))
        return PERMANENT_CLASSES.has(code.slice(0, 2)) ? 'permanent' : 'transient';
      return classifyGenericError(err);
    },
    isMissingTable: (err) => errorCode(err) === '42P01',
    async listTables(ex) {
      const rows = await dialect.exec(
        ex,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name",
        [],
      );
      return rows.map((r) => String(r.table_name));
    },
  };
  return { db, dialect, close: () => db.destroy() };
}
