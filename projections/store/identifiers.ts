/**
 * Identifiers built from device data (table and column names). A device chooses them, so they are
 * hostile until proven otherwise: every one goes through `quoteIdent`, which refuses what either
 * database would mangle and quotes the rest. Physical names are derived deterministically, so a
 * rebuild recreates exactly the same tables and columns.
 */
import { sha256Hex } from '../../domain/shared/canonical';

/** PostgreSQL silently truncates longer identifiers (NAMEDATALEN - 1), which would alias names. */
export const MAX_IDENT_BYTES = 63;

export class IdentifierError extends Error {
  override readonly name = 'IdentifierError';
}

const utf8Bytes = (s: string): number => Buffer.byteLength(s, 'utf8');
// eslint-disable-next-line no-control-regex -- control characters are exactly what we look for
const CONTROL = /[\u0000-\u001f\u007f]/;

/** Whether a name can be used verbatim (quoted) on both dialects without being altered. */
export function isSafeIdentifier(name: string): boolean {
  return name.length > 0 && name.isWellFormed() && !CONTROL.test(name) && utf8Bytes(name) <= MAX_IDENT_BYTES;
}

/**
 * Quote an identifier for SQLite and PostgreSQL: wrap in double quotes and double any inner
 * double quote. Refuses names that are empty, not well-formed UTF-16, contain control characters
 * (NUL ends a C string), or exceed 63 bytes (PostgreSQL would truncate them silently).
 */
export function quoteIdent(name: string): string {
  if (!isSafeIdentifier(name)) {
    throw new IdentifierError(`unsafe SQL identifier ${JSON.stringify(name.slice(0, 80))}`);
  }
  return `"${name.replaceAll('"', '""')}"`;
}

export const shortHash = (s: string, n = 8): string => sha256Hex(s).slice(0, n);

/** Cut a string to at most `maxBytes` of UTF-8 without splitting a character. */
export function truncateUtf8(s: string, maxBytes: number): string {
  let out = '';
  let bytes = 0;
  for (const ch of s) {
    const b = utf8Bytes(ch);
    if (bytes + b > maxBytes) break;
    out += ch;
    bytes += b;
  }
  return out;
}

/**
 * The first 8 hex characters of the device id without dashes. An id that does not start with
 * 8 hex digits is hashed instead, so the prefix is always `[0-9a-f]{8}` and can never collide
 * with the store's fixed table names.
 */
export function device8(deviceId: string): string {
  const hex = deviceId.replaceAll('-', '').toLowerCase();
  return /^[0-9a-f]{8}/.test(hex) ? hex.slice(0, 8) : shortHash(deviceId);
}

/** Lower-case, and every character outside [a-z0-9_] becomes `_`. */
export const sanitizeName = (name: string): string =>
  Array.from(name.toLowerCase(), (ch) => (/^[a-z0-9_]$/.test(ch) ? ch : '_')).join('');

/**
 * `{prefix}{sanitised}`; when sanitising changed the name or it would exceed 63 bytes, the
 * sanitised part is cut and `_{hash8 of the original}` appended, so two distinct source names
 * (e.g. `My-Table` and `my_table`) never map to one table.
 */
export function derivedTableName(prefix: string, source: string, salt = ''): string {
  const clean = sanitizeName(source);
  const plain = `${prefix}${clean}`;
  if (clean === source && salt === '' && plain.length <= MAX_IDENT_BYTES) return plain;
  const suffix = `_${shortHash(`${source}\u0000${salt}`)}`;
  return `${prefix}${clean.slice(0, MAX_IDENT_BYTES - prefix.length - suffix.length)}${suffix}`;
}

/**
 * `edge_mirror_{device8}_{table}`. `generation` > 1 (a new table after a key or type change)
 * and `salt` (a name already taken by another lineage) feed the hash suffix.
 */
export function mirrorTableName(deviceId: string, sourceTable: string, generation = 1, salt = ''): string {
  const gen = generation > 1 ? `g${generation}` : '';
  return derivedTableName(
    `edge_mirror_${device8(deviceId)}_`,
    sourceTable,
    [gen, salt].filter(Boolean).join(':'),
  );
}

/**
 * A coalesced mirror table: `edge_mirror_p{project8}_{table}` (scope project) or
 * `edge_mirror_f{fleet8}_{table}` (scope fleet), with the same rules as device mirror tables.
 */
export function coalescedTableName(
  scope: 'project' | 'fleet',
  scopeId: string,
  sourceTable: string,
  generation = 1,
  salt = '',
): string {
  const gen = generation > 1 ? `g${generation}` : '';
  return derivedTableName(
    `edge_mirror_${scope === 'project' ? 'p' : 'f'}${device8(scopeId)}_`,
    sourceTable,
    [gen, salt].filter(Boolean).join(':'),
  );
}

/** `edge_ts_{device8}_{table}`, with the same rules as mirror tables. */
export function telemetryTableName(deviceId: string, sourceTable: string, salt = ''): string {
  return derivedTableName(`edge_ts_${device8(deviceId)}_`, sourceTable, salt);
}

/**
 * The physical column name for a target name: itself when it is safe, else a cut, cleaned
 * version with a hash suffix. `taken` holds lower-cased names already used in the table
 * (SQLite compares column names case-insensitively); a clash also gets a hash suffix.
 */
export function physicalColumnName(target: string, taken: ReadonlySet<string>): string {
  let candidate = target;
  for (let attempt = 0; ; attempt++) {
    if (isSafeIdentifier(candidate) && !taken.has(candidate.toLowerCase())) return candidate;
    const suffix = `_${shortHash(attempt === 0 ? target : `${target}\u0000${attempt}`)}`;
    const base = target.isWellFormed() ? target.replace(new RegExp(CONTROL.source, 'gu'), '_') : '';
    candidate = `${truncateUtf8(base, MAX_IDENT_BYTES - suffix.length)}${suffix}`;
  }
}
