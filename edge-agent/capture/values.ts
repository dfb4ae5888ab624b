import type { WireValue } from '../../domain/protocol/contracts';

/**
 * SQLite values on the wire (docs/wire-values.md):
 * - INTEGER within ±(2^53−1) → JSON number; beyond → `{"$int":"<decimal>"}` (exact).
 * - REAL → JSON number; ±Infinity (SQLite can store it, JSON cannot) → the strings
 *   "Infinity" / "-Infinity".
 * - TEXT → JSON string. NULL → null.
 * - BLOB → `{"$blob":"<standard base64>"}`.
 *
 * In the journal the triggers write BLOBs as `{"$h":"<HEX>"}` because SQLite has hex() but no
 * base64; the agent converts them when it builds a batch.
 */

export type SqliteValue = null | number | bigint | string | Uint8Array;

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function encodeReal(n: number): WireValue {
  if (Number.isFinite(n)) return n;
  if (Number.isNaN(n)) return null;
  return n > 0 ? 'Infinity' : '-Infinity';
}

/** A value as better-sqlite3 returns it (with safeIntegers on) → its wire form. */
export function encodeSqliteValue(v: SqliteValue): WireValue {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint') {
    return v <= MAX_SAFE && v >= -MAX_SAFE ? Number(v) : { $int: v.toString() };
  }
  if (typeof v === 'number') return encodeReal(v);
  if (typeof v === 'string') return v;
  return { $blob: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
}

/** A wire value → what better-sqlite3 binds (used when the cloud writes rows back). */
export function decodeWireValue(v: WireValue): SqliteValue {
  if (v === null) return null;
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'number') return Number.isInteger(v) ? BigInt(v) : v;
  if (typeof v === 'string') return v;
  if ('$int' in v) return BigInt(v.$int);
  return Buffer.from(v.$blob, 'base64');
}

function hexToBase64(hex: string): string {
  return Buffer.from(hex, 'hex').toString('base64');
}

function fromJournalScalar(v: unknown): WireValue {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return v as WireValue;
  if (typeof v === 'number') return encodeReal(v);
  if (typeof v === 'object' && v !== null) {
    const o = v as Record<string, unknown>;
    if (typeof o.$h === 'string') return { $blob: hexToBase64(o.$h) };
    if (typeof o.$int === 'string') return { $int: o.$int };
  }
  throw new Error(`unexpected value in the journal: ${JSON.stringify(v)}`);
}

// 16 digits in a row may be an integer beyond 2^53 (JSON.parse would round it): slow path.
const LONG_DIGITS = /\d{16}/;

/**
 * Parse a journal row (the JSON array SQLite's json_array() wrote) into wire values, keeping
 * integers beyond 2^53 exact.
 */
export function parseJournalArray(text: string): WireValue[] {
  const raw = LONG_DIGITS.test(text) ? parseExact(text) : (JSON.parse(text) as unknown);
  if (!Array.isArray(raw)) throw new Error('journal row is not a JSON array');
  return raw.map(fromJournalScalar);
}

/**
 * A small JSON parser for SQLite's compact output that turns integer literals beyond 2^53
 * into `{$int}` instead of rounding them. Only used when the text holds a long digit run.
 */
export function parseExact(text: string): unknown {
  let i = 0;
  const fail = (): never => {
    throw new Error(`invalid JSON at offset ${i}`);
  };
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const value = (): unknown => {
    ws();
    const c = text[i];
    if (c === '[') {
      i++;
      const out: unknown[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return out;
      }
      for (;;) {
        out.push(value());
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === ']') {
          i++;
          return out;
        } else fail();
      }
    }
    if (c === '{') {
      i++;
      const out: Record<string, unknown> = {};
      ws();
      if (text[i] === '}') {
        i++;
        return out;
      }
      for (;;) {
        ws();
        const k = value();
        if (typeof k !== 'string') fail();
        ws();
        if (text[i] !== ':') fail();
        i++;
        out[k as string] = value();
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === '}') {
          i++;
          return out;
        } else fail();
      }
    }
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (j >= text.length) fail();
      const s = JSON.parse(text.slice(i, j + 1)) as string;
      i = j + 1;
      return s;
    }
    const m = /^-?\d+(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (m) {
      i += m[0].length;
      if (m[1] === undefined && m[2] === undefined) {
        const b = BigInt(m[0]);
        return b <= MAX_SAFE && b >= -MAX_SAFE ? Number(b) : { $int: b.toString() };
      }
      return Number(m[0]);
    }
    for (const [lit, v] of [
      ['null', null],
      ['true', true],
      ['false', false],
    ] as const) {
      if (text.startsWith(lit, i)) {
        i += lit.length;
        return v;
      }
    }
    return fail();
  };
  const v = value();
  ws();
  if (i !== text.length) fail();
  return v;
}
