/**
 * The value classes exact replication must carry (docs/wire-values.md), as better-sqlite3 reads
 * them with safe integers on: one list for the writers' tests, the fault workload and the
 * differential end-to-end test, and a seeded generator over the same classes.
 */
import type { SqliteValue, StorageClass } from '../../domain/protocol/wire-values';

export type ValueCase = Readonly<{ name: string; value: SqliteValue }>;

export const VALUE_CASES: readonly ValueCase[] = [
  { name: 'null', value: null },
  { name: 'real 17 digits', value: 0.30000000000000004 },
  { name: 'real pi', value: 3.141592653589793 },
  { name: 'real 1/3', value: 1 / 3 },
  { name: 'real tiny', value: 5e-324 },
  { name: 'real huge', value: 1.7976931348623157e308 },
  { name: 'real integral 5.0', value: 5 },
  { name: 'real integral 2^53', value: 9007199254740992 },
  { name: 'real integral 1e21', value: 1e21 },
  { name: 'real +Infinity', value: Infinity },
  { name: 'real -Infinity', value: -Infinity },
  { name: 'real -0.0', value: -0 },
  { name: 'integer 0', value: 0n },
  { name: 'integer -1', value: -1n },
  { name: 'integer 2^53+1', value: 9007199254740993n },
  { name: 'integer max', value: 9223372036854775807n },
  { name: 'integer min', value: -9223372036854775808n },
  { name: 'text empty', value: '' },
  { name: 'text ascii', value: 'plain' },
  { name: 'text unicode', value: 'Grüße, 世界 — 🚀 עברית' },
  { name: 'text looks numeric', value: '0.30000000000000004' },
  { name: 'text Infinity', value: 'Infinity' },
  { name: 'blob empty', value: Buffer.alloc(0) },
  { name: 'blob bytes', value: Buffer.from([0, 1, 2, 0xfe, 0xff]) },
];

/** SQLite's `typeof()` of a value as better-sqlite3 binds it (numbers bind as REAL). */
export function sqliteClassOf(v: SqliteValue): StorageClass {
  if (v === null) return 'null';
  if (typeof v === 'bigint') return 'integer';
  if (typeof v === 'number') return Number.isNaN(v) ? 'null' : 'real';
  if (typeof v === 'string') return 'text';
  return 'blob';
}

const pick = <T>(xs: readonly T[], random: () => number): T => xs[Math.floor(random() * xs.length)]!;
const casesOf = (cls: StorageClass) => VALUE_CASES.filter((c) => sqliteClassOf(c.value) === cls);

/** A REAL: 17-significant-digit ones, integral ones, and now and then ±Infinity, -0.0, extremes. */
export function randomReal(random: () => number): number {
  const r = random();
  if (r < 0.15) return pick(casesOf('real'), random).value as number;
  if (r < 0.35) return Math.round((random() - 0.5) * 2e6); // integral
  return (random() - 0.5) * 10 ** Math.floor(random() * 30 - 10); // 17 significant digits
}

/** An INTEGER: 64-bit ones (beyond 2^53 both ways), small ones, the extremes. */
export function randomInteger(random: () => number): bigint {
  const r = random();
  if (r < 0.1) return pick(casesOf('integer'), random).value as bigint;
  if (r < 0.4) return BigInt(Math.floor(random() * 1000));
  const hi = BigInt(Math.floor(random() * 2 ** 31)) * (random() < 0.5 ? -1n : 1n);
  return (hi << 32n) | BigInt(Math.floor(random() * 2 ** 32));
}

const ALPHABET = ['a', 'Z', ' ', 'é', 'ß', '世', '🚀', 'ע', "'", '"', '\\', '\n', '0', '.'];

/** TEXT of any script (quotes, backslashes, newlines, astral characters), empty too. */
export function randomText(random: () => number): string {
  if (random() < 0.1) return pick(casesOf('text'), random).value as string;
  const n = Math.floor(random() * 24);
  let s = '';
  for (let i = 0; i < n; i++) s += pick(ALPHABET, random);
  return s;
}

/** A BLOB, empty about one time in five. */
export function randomBlob(random: () => number): Buffer {
  const b = Buffer.alloc(random() < 0.2 ? 0 : 1 + Math.floor(random() * 16));
  for (let i = 0; i < b.length; i++) b[i] = Math.floor(random() * 256);
  return b;
}

/** A seeded random value of any class (an untyped column's content). */
export function randomValue(random: () => number): SqliteValue {
  const r = random();
  if (r < 0.3) return randomReal(random);
  if (r < 0.55) return randomInteger(random);
  if (r < 0.75) return randomText(random);
  if (r < 0.92) return randomBlob(random);
  return null;
}

/** `value()`, or NULL with probability `p`. */
export const orNull = <T>(random: () => number, value: () => T, p = 0.08): T | null =>
  random() < p ? null : value();
