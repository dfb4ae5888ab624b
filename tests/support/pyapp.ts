/**
 * An application that writes through Python's `sqlite3` module, i.e. the system's SQLite
 * (Debian 12: 3.40.1), not the SQLite better-sqlite3 bundles: the "other SQLite" writer of the
 * exact-replication tests. It drives `pyapp.py` over line-delimited JSON.
 *
 * Values are given as better-sqlite3 reads them with safe integers on (`SqliteValue`): a bigint
 * is bound as an INTEGER, a JS number always as a REAL (as better-sqlite3 binds numbers), a string
 * as TEXT, bytes as a BLOB, null as NULL. Each travels typed (`$int`, `$real`, `$blob`), so
 * 17-digit REALs, ±Infinity, -0.0 and 64-bit integers reach Python exactly.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { realText, type SqliteValue } from '../../domain/protocol/wire-values';

export type PyParam = SqliteValue;
export type PyStep = Readonly<{ sql: string; params?: readonly PyParam[] }>;

type Tagged = null | string | { $int: string } | { $real: string } | { $blob: string };
type Reply = {
  id: number;
  ok: boolean;
  error?: string;
  changes?: number;
  last_rowid?: number | null;
  columns?: string[];
  rows?: Tagged[][];
};

export function toTagged(v: PyParam | undefined): Tagged {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint') return { $int: v.toString() };
  if (typeof v === 'number') {
    if (Number.isNaN(v)) return null; // SQLite stores NaN as NULL; say so rather than send "NaN"
    return { $real: realText(v) };
  }
  if (typeof v === 'string') return v;
  return { $blob: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
}

export function fromTagged(v: Tagged): SqliteValue {
  if (v === null || typeof v === 'string') return v;
  if ('$int' in v) return BigInt(v.$int);
  if ('$real' in v) return v.$real === '-0' ? -0 : Number(v.$real);
  return Buffer.from(v.$blob, 'base64');
}

const SCRIPT = join(__dirname, 'pyapp.py');

export class PyApp {
  private next = 1;
  private readonly waiting = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private stderr = '';
  private exited: Error | undefined;

  private constructor(
    readonly path: string,
    private readonly child: ChildProcessWithoutNullStreams,
  ) {
    child.stderr.on('data', (b: Buffer) => {
      this.stderr = (this.stderr + b.toString()).slice(-4000);
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      const r = JSON.parse(line) as Reply;
      const w = this.waiting.get(r.id);
      this.waiting.delete(r.id);
      w?.resolve(r);
    });
    child.on('exit', (code, signal) => {
      this.exited = new Error(
        `the python3 writer of ${path} exited (${code ?? signal}); its stderr: ${this.stderr || '(empty)'}`,
      );
      for (const w of this.waiting.values()) w.reject(this.exited);
      this.waiting.clear();
    });
  }

  /** Open (or create) the database at `path` with python3's sqlite3. */
  static open(path: string): PyApp {
    const child = spawn('python3', ['-u', SCRIPT, path], { stdio: ['pipe', 'pipe', 'pipe'] });
    return new PyApp(path, child);
  }

  private send(msg: Record<string, unknown>): Promise<Reply> {
    if (this.exited) return Promise.reject(this.exited);
    const id = this.next++;
    return new Promise<Reply>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.child.stdin.write(`${JSON.stringify({ ...msg, id })}\n`);
    }).then((r) => {
      if (!r.ok) throw new Error(`python3 sqlite3 (${this.path}): ${r.error}`);
      return r;
    });
  }

  /** SQLite version of the library python3 links (3.40.1 on Debian 12). */
  async sqliteVersion(): Promise<string> {
    const rows = await this.query('SELECT sqlite_version()');
    return String(rows[0]![0]);
  }

  /** One statement in autocommit mode; resolves once it is committed. */
  async exec(sql: string, params: readonly PyParam[] = []): Promise<number> {
    return (await this.send({ cmd: 'exec', sql, params: params.map(toTagged) })).changes ?? 0;
  }

  /** Several statements without parameters (DDL), as `executescript`. */
  async script(sql: string): Promise<void> {
    await this.send({ cmd: 'script', sql });
  }

  /** One `BEGIN IMMEDIATE … COMMIT` transaction; rolled back (and rejected) if a step fails. */
  async tx(steps: readonly PyStep[]): Promise<number> {
    const r = await this.send({
      cmd: 'tx',
      steps: steps.map((s) => ({ sql: s.sql, params: (s.params ?? []).map(toTagged) })),
    });
    return r.changes ?? 0;
  }

  /** Rows of a query, values as better-sqlite3 reads them with safe integers on. */
  async query(sql: string, params: readonly PyParam[] = []): Promise<SqliteValue[][]> {
    const r = await this.send({ cmd: 'query', sql, params: params.map(toTagged) });
    return (r.rows ?? []).map((row) => row.map(fromTagged));
  }

  async close(): Promise<void> {
    if (this.exited) return;
    const done = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    await this.send({ cmd: 'close' }).catch(() => undefined);
    this.child.stdin.end();
    await done;
  }

  /** kill -9 (a crashing application). */
  async kill(): Promise<void> {
    if (this.exited) return;
    const done = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGKILL');
    await done;
  }
}
