/**
 * Wire values (SPEC §2: JSON scalars, `{"$int": "<decimal>"}` beyond 2^53, `{"$blob": "<base64>"}`)
 * to and from database values. What a column of each type accepts differs per dialect; those
 * rules live in the dialect modules (`sqlite.ts`, `postgres.ts`), built from these helpers.
 */
import type { WireValue } from '../../domain/protocol/contracts';

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

/** The decimal text of a scalar, for columns that store everything as text or bytes. */
export function scalarText(v: Exclude<WireValue, null>): string {
  if (isWireInt(v)) return v.$int;
  if (isWireBlob(v)) return v.$blob;
  return String(v);
}

/**
 * A database value back to its wire form: the inverse of the decoders above, so a value read
 * from a mirror table is exactly what the device sent (integers beyond 2^53 stay exact).
 */
export function toWireValue(v: unknown): WireValue {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : { $int: v.toString() };
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return { $blob: Buffer.from(v).toString('base64') };
  if (typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean') return v;
  if (v instanceof Date) return v.toISOString();
  return String(v);
}

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
