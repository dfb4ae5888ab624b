/**
 * Wire values (docs/wire-values.md) to and from database values, through the one codec of
 * `domain/protocol/wire-values.ts`. What a column of each type accepts differs per dialect; those
 * rules live in the dialect modules (`sqlite.ts`, `postgres.ts`), built from these helpers.
 */
import type { WireValue } from '../../domain/protocol/contracts';
import type { Affinity } from '../../domain/protocol/fingerprint';
import {
  decodeRealText,
  decodeWireValue,
  encodeInteger,
  encodeReal,
  encodeSqliteValue,
  isRealText,
  normalizeWire,
  type SqliteValue,
} from '../../domain/protocol/wire-values';

export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;

/** A value that can never be written to its column: a permanent materialization failure. */
export class MaterializationError extends Error {
  override readonly name = 'MaterializationError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}
export const isMaterializationError = (e: unknown): e is MaterializationError =>
  e instanceof MaterializationError;

/** What a driver binds: better-sqlite3 and pg both accept these. */
export type DbValue = null | number | string | bigint | Buffer;

export type WireBlob = Readonly<{ $blob: string }>;
export type WireInt = Readonly<{ $int: string }>;

export const isWireBlob = (v: unknown): v is WireBlob =>
  typeof v === 'object' && v !== null && typeof (v as { $blob?: unknown }).$blob === 'string';
export const isWireInt = (v: unknown): v is WireInt =>
  typeof v === 'object' && v !== null && typeof (v as { $int?: unknown }).$int === 'string';
export const isWireReal = (v: unknown): v is Readonly<{ $real: string }> =>
  typeof v === 'object' && v !== null && typeof (v as { $real?: unknown }).$real === 'string';

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

export function decodeBlob(v: WireBlob): Buffer {
  const s = v.$blob;
  if (s.length % 4 !== 0 || !BASE64.test(s)) {
    throw new MaterializationError('invalid_blob', 'a $blob value is not canonical base64');
  }
  return Buffer.from(s, 'base64');
}

export function decodeInt(v: WireInt): bigint {
  if (!/^-?\d+$/.test(v.$int))
    throw new MaterializationError('invalid_int', `$int ${v.$int} is not an integer`);
  return BigInt(v.$int);
}

export const inInt64 = (n: bigint): boolean => n >= INT64_MIN && n <= INT64_MAX;

/**
 * A wire value → the SQLite value it stands for (INTEGER as bigint, REAL as number, TEXT as
 * string, BLOB as Buffer), checked: what the codec cannot turn into a SQLite value exactly is a
 * permanent materialization failure, never a rounded or re-typed value.
 */
export function decodeForStore(v: WireValue): SqliteValue {
  if (v === null) return null;
  if (typeof v === 'boolean') return v ? 1n : 0n;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) {
      throw new MaterializationError('invalid_real', `${v} is not a wire number (use $real)`);
    }
    if (Number.isInteger(v)) {
      const n = BigInt(v);
      if (!inInt64(n))
        throw new MaterializationError('integer_out_of_range', `${v} does not fit a 64-bit integer`);
      return n;
    }
    return v;
  }
  if (typeof v === 'string') return v;
  if (isWireBlob(v)) return decodeBlob(v);
  if (isWireInt(v)) {
    const n = decodeInt(v);
    // SQLite would silently turn it into an approximate REAL: refuse instead of losing digits.
    if (!inInt64(n))
      throw new MaterializationError('integer_out_of_range', `${v.$int} does not fit a 64-bit integer`);
    return n;
  }
  if (isWireReal(v)) {
    if (!isRealText(v.$real))
      throw new MaterializationError('invalid_real', `$real ${v.$real} is not a real number`);
    return decodeRealText(v.$real);
  }
  return decodeWireValue(v);
}

/**
 * A value read from a SQLite store with safe integers on → its wire form. bigint is an INTEGER,
 * a JS number a REAL (even an integral one), so the class read back is the class stored.
 */
export function sqliteToWire(v: unknown): WireValue {
  if (v === undefined) return null;
  if (v === null || typeof v === 'bigint' || typeof v === 'number' || typeof v === 'string') {
    return encodeSqliteValue(v);
  }
  if (v instanceof Uint8Array) return encodeSqliteValue(v);
  return String(v);
}

/**
 * A value read from a PostgreSQL mirror column of `affinity` → its wire form. The column type
 * says the class: bigint columns hold INTEGERs, double precision REALs, text TEXT, and jsonb
 * (BLOB and NUMERIC affinity) the canonical wire value itself.
 */
export function postgresToWire(affinity: Affinity, v: unknown): WireValue {
  if (v === null || v === undefined) return null;
  switch (affinity) {
    case 'INTEGER':
      return encodeInteger(typeof v === 'bigint' ? v : BigInt(v as number | string));
    case 'REAL':
      return encodeReal(typeof v === 'number' ? v : Number(v));
    case 'TEXT':
      return String(v);
    case 'BLOB':
    case 'NUMERIC':
      // pg parses jsonb already: the value is the wire value itself (a JSON string is TEXT).
      return normalizeWire(v as WireValue);
  }
}

/** A mirror or telemetry value read with EXACT_MARKER → its wire form, per dialect. */
export const dbToWire = (kind: 'sqlite' | 'postgres', affinity: Affinity, v: unknown): WireValue =>
  kind === 'sqlite' ? sqliteToWire(v) : postgresToWire(affinity, v);

/** bigint → number when exact; drivers hand back bigint only where a number would lose digits. */
export function normalizeInteger(v: unknown): unknown {
  if (typeof v === 'bigint' && v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)) {
    return Number(v);
  }
  return v;
}

export function normalizeRow<T extends Record<string, unknown>>(row: T): T {
  for (const k of Object.keys(row)) {
    const v = row[k];
    if (typeof v === 'bigint') (row as Record<string, unknown>)[k] = normalizeInteger(v);
  }
  return row;
}

/**
 * Raw SQL that starts with this comment is read without normalising integers (SQLite): mirror
 * rows keep bigint for INTEGER and number for REAL, so the storage class survives the read.
 */
export const EXACT_MARKER = '/*sluice:exact*/';
