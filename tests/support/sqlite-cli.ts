/**
 * Debian's `sqlite3` command-line shell (its own SQLite, 3.40.1 on Debian 12) as a second
 * application writer: DDL and writes as SQL text, values spelled as SQL literals that keep their
 * storage class (`sqlLiteral`).
 */
import { execFileSync } from 'node:child_process';
import type { SqliteValue } from '../../domain/protocol/wire-values';

/** The shell's SQLite version ("3.40.1"), or a clear error when the package is missing. */
export function sqliteCliVersion(): string {
  try {
    return execFileSync('sqlite3', ['--version'], { encoding: 'utf8' }).split(' ')[0]!.trim();
  } catch (err) {
    throw new Error(
      `the sqlite3 command-line shell is not installed (${(err as Error).message}); ` +
        'install the Debian package: apt-get install sqlite3 (infra/dev/ensure-deps.sh sqlite3 does it)',
      { cause: err },
    );
  }
}

/**
 * A value as an SQL literal with the same storage class: a bigint an INTEGER, a JS number a
 * REAL (integral ones get `.0`, ±Infinity is `±9e999`, -0.0 is `-0.0`), a string a quoted TEXT,
 * bytes an `x'…'` BLOB. REAL literals are decimal text: the shell's own parser turns them into
 * doubles, which is the point of an "other SQLite" writer (the device's table is the truth).
 */
export function sqlLiteral(v: SqliteValue | undefined): string {
  if (v === null || v === undefined) return 'NULL';
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number') {
    if (Number.isNaN(v)) return 'NULL';
    if (v === Infinity) return '9e999';
    if (v === -Infinity) return '-9e999';
    if (Object.is(v, -0)) return '-0.0';
    const s = String(v);
    return /[.eE]/.test(s) ? s : `${s}.0`;
  }
  if (typeof v === 'string') return `'${v.replaceAll("'", "''")}'`;
  return `x'${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}'`;
}

/**
 * Run SQL through `sqlite3 DB` (stops at the first error, waits up to 30 s for a lock). Returns
 * what the shell printed; throws with its message when a statement fails.
 */
export function sqliteCli(dbPath: string, sql: string): string {
  try {
    return execFileSync('sqlite3', ['-bail', '-cmd', '.timeout 30000', dbPath], {
      input: sql,
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`sqlite3 ${dbPath}: ${e.stderr?.trim() || e.message}`, { cause: err });
  }
}
