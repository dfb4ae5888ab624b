import { canonicalJson, pkHash, sha256Hex } from '../shared/canonical';
import type { WireValue } from './contracts';

/**
 * The one codec between SQLite values and their wire form (docs/wire-values.md). The agent
 * encodes what SQLite stores natively; the read stores decode into their columns and encode back
 * what they read; verify digests are computed over these encodings on both sides. The storage
 * class survives the round trip: an integral REAL never becomes an INTEGER, -0.0 keeps its sign,
 * and ±Infinity is never confused with the text "Infinity".
 */

/** A value as SQLite stores it, read with 64-bit integers on (better-sqlite3 `safeIntegers`). */
export type SqliteValue = null | bigint | number | string | Uint8Array;

export type StorageClass = 'null' | 'integer' | 'real' | 'text' | 'blob';

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** `$real` text of a REAL that a plain JSON number cannot carry with its class. */
export function realText(n: number): string {
  if (Object.is(n, -0)) return '-0';
  return String(n); // "Infinity", "-Infinity", or the shortest decimal that reads back exactly
}

/** A REAL → its wire form: a JSON number only when it reads back as a REAL (not integral). */
export function encodeReal(n: number): WireValue {
  if (Number.isNaN(n)) return null; // SQLite never stores NaN (it becomes NULL)
  if (Number.isFinite(n) && !Number.isInteger(n)) return n;
  return { $real: realText(n) };
}

/** An INTEGER → its wire form: a JSON number within ±(2^53 − 1), `$int` beyond. */
export function encodeInteger(v: bigint): WireValue {
  return v <= MAX_SAFE && v >= -MAX_SAFE ? Number(v) : { $int: v.toString() };
}

/**
 * A value read with safe integers on → its wire form. A JS number here is always a REAL
 * (INTEGERs arrive as bigint), so an integral number is sent as `$real`.
 */
export function encodeSqliteValue(v: SqliteValue | undefined): WireValue {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint') return encodeInteger(v);
  if (typeof v === 'number') return encodeReal(v);
  if (typeof v === 'string') return v;
  return { $blob: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
}

const REAL_TEXT = /^(-?(\d+(\.\d+)?([eE][+-]?\d+)?)|-?Infinity|-0)$/;

/** Is this `$real` text one the codec accepts? (Decimal, exponent, ±Infinity, -0; never NaN.) */
export const isRealText = (s: string): boolean => REAL_TEXT.test(s);

export function decodeRealText(s: string): number {
  if (s === '-0') return -0;
  return Number(s);
}

/** The storage class a wire value stands for. */
export function storageClassOf(v: WireValue): StorageClass {
  if (v === null) return 'null';
  if (typeof v === 'boolean') return 'integer';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'real';
  if (typeof v === 'string') return 'text';
  if ('$int' in v) return 'integer';
  if ('$real' in v) return 'real';
  return 'blob';
}

/**
 * A wire value → what better-sqlite3 binds to store it with the same storage class: INTEGER as
 * bigint, REAL as number, TEXT as string, BLOB as Buffer. (Cloud write-back and the SQLite read
 * store.)
 */
export function decodeWireValue(v: WireValue): SqliteValue {
  if (v === null) return null;
  if (typeof v === 'boolean') return v ? 1n : 0n;
  if (typeof v === 'number') return Number.isInteger(v) ? BigInt(v) : v;
  if (typeof v === 'string') return v;
  if ('$int' in v) return BigInt(v.$int);
  if ('$real' in v) return decodeRealText(v.$real);
  return Buffer.from(v.$blob, 'base64');
}

/** Two wire values stand for the same SQLite value (class and bits). */
export function sameWireValue(a: WireValue, b: WireValue): boolean {
  return canonicalJson(normalizeWire(a)) === canonicalJson(normalizeWire(b));
}

/** One spelling per value: `$int` within the safe range and `$real` of a non-integral REAL fold to numbers. */
export function normalizeWire(v: WireValue): WireValue {
  if (v === null || typeof v !== 'object') return v;
  if ('$int' in v) return encodeInteger(BigInt(v.$int));
  if ('$real' in v) return encodeReal(decodeRealText(v.$real));
  return v;
}

// ---- verify: digests of key buckets (docs/verify.md) ----

/** Rows are grouped into this many buckets by their key hash; verify and resync name buckets. */
export const VERIFY_BUCKETS = 256;

/** A key's bucket: the first byte of its `source_pk_hash`. */
export function bucketOf(pk: Readonly<Record<string, WireValue>>): number {
  return parseInt(pkHash(normalizeRecord(pk)).slice(0, 2), 16);
}

function normalizeRecord(r: Readonly<Record<string, WireValue>>): Record<string, WireValue> {
  const out: Record<string, WireValue> = {};
  for (const [k, v] of Object.entries(r)) out[k] = normalizeWire(v);
  return out;
}

/** SHA-256 (hex) of a row restricted to the verified columns, in canonical wire encoding. */
export function rowDigest(row: Readonly<Record<string, WireValue>>, columns: readonly string[]): string {
  const picked: Record<string, WireValue> = {};
  for (const c of columns) picked[c] = normalizeWire(row[c] ?? null);
  return sha256Hex(canonicalJson(picked));
}

/** Order-free digest of a bucket: the XOR of its rows' digests (hex), with the row count beside it. */
export class BucketDigests {
  private readonly acc = new Map<number, { rows: number; bytes: Uint8Array }>();

  add(bucket: number, digestHex: string): void {
    let a = this.acc.get(bucket);
    if (!a) {
      a = { rows: 0, bytes: new Uint8Array(32) };
      this.acc.set(bucket, a);
    }
    a.rows++;
    const d = Buffer.from(digestHex, 'hex');
    for (let i = 0; i < 32; i++) a.bytes[i]! ^= d[i]!;
  }

  addRow(
    pk: Readonly<Record<string, WireValue>>,
    row: Readonly<Record<string, WireValue>>,
    columns: readonly string[],
  ): void {
    this.add(bucketOf(pk), rowDigest(row, columns));
  }

  /** Non-empty buckets in bucket order. */
  list(): { bucket: number; rows: number; digest: string }[] {
    return [...this.acc.entries()]
      .sort((x, y) => x[0] - y[0])
      .map(([bucket, a]) => ({ bucket, rows: a.rows, digest: Buffer.from(a.bytes).toString('hex') }));
  }
}

/** Buckets whose digest or count differ between two digest lists (a missing bucket is empty). */
export function divergentBuckets(
  a: readonly { bucket: number; rows: number; digest: string }[],
  b: readonly { bucket: number; rows: number; digest: string }[],
): number[] {
  const key = (x: { rows: number; digest: string }) => `${x.rows}:${x.digest}`;
  const ma = new Map(a.map((x) => [x.bucket, key(x)]));
  const mb = new Map(b.map((x) => [x.bucket, key(x)]));
  const out: number[] = [];
  for (let i = 0; i < VERIFY_BUCKETS; i++) if ((ma.get(i) ?? '') !== (mb.get(i) ?? '')) out.push(i);
  return out;
}
