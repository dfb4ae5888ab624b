import { CompiledQuery, Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
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
  normalizeInteger,
  scalarText,
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

// PostgreSQL is typed: a value the column type cannot hold fails the write (a permanent,
// recorded materialization error) rather than being coerced into something else.
function bindValue(affinity: Affinity, v: WireValue): DbValue {
  if (v === null) return null;
  if (affinity === 'BLOB') {
    if (isWireBlob(v)) return decodeBlob(v);
    // A column without a declared type has BLOB affinity on SQLite yet usually holds text or
    // numbers: keep those as their UTF-8 text rather than refusing every row.
    return Buffer.from(scalarText(typeof v === 'boolean' ? (v ? 1 : 0) : v), 'utf8');
  }
  if (isWireBlob(v)) {
    throw new MaterializationError('type_mismatch', `a blob value cannot be stored in a ${affinity} column`);
  }
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (isWireInt(v)) {
    const n = decodeInt(v);
    if (affinity === 'INTEGER' && !inInt64(n)) {
      throw new MaterializationError('integer_out_of_range', `${v.$int} does not fit a 64-bit integer`);
    }
    return affinity === 'REAL' ? Number(n) : n.toString();
  }
  if (typeof v === 'number') {
    if (affinity === 'INTEGER' && !Number.isInteger(v)) {
      throw new MaterializationError('type_mismatch', `${v} is not an integer`);
    }
    return affinity === 'TEXT' ? String(v) : v;
  }
  if (v.includes('\u0000')) {
    throw new MaterializationError('type_mismatch', 'PostgreSQL text cannot hold a NUL character');
  }
  return v;
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
        case 'BLOB':
          return 'bytea';
        case 'NUMERIC':
          return 'numeric';
      }
    },
    placeholder: (i) => `$${i}`,
    bindValue,
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
