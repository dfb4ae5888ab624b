import type Database from 'better-sqlite3';
import type { RowChange, WireValue } from '../../domain/protocol/contracts';
import type { SchemaColumns } from '../../domain/protocol/fingerprint';
import { BucketDigests, encodeSqliteValue, type SqliteValue } from '../../domain/protocol/wire-values';
import type { RegisteredTable } from './install';
import { registerBucketFunction } from './install';
import { FilterKeys } from '../state/filter-keys';
import { schemaHash } from '../../domain/protocol/fingerprint';
import {
  filterFingerprint,
  filterSchema,
  type FilterProblem,
  type TableFilter,
  withholdingProblems,
} from './filter';
import type { TableSchema } from './schema';
import { keyColumns, logTable, quoteIdent, SEQ } from './sql';

/** What the journal reads a table's log with. */
type View = {
  tid: number;
  name: string;
  keys: readonly string[];
  schema?: TableSchema;
  hash: string;
  fingerprint: SchemaColumns;
  /** The row predicate of the table's edge filter (also kept when the table is gone). */
  where?: string;
  read?: Database.Statement;
};

export type JournalOptions = Readonly<{
  /** The keys the cloud may hold of tables with a row predicate (state.db). */
  keys?: FilterKeys;
  /** The edge filter of a table (config `table_strategies`), if it has one. */
  filterOf?: (table: string) => TableFilter | undefined;
}>;

/** A table whose filter cannot be applied to its schema now: nothing of it is read or sent. */
export type Withheld = Readonly<{ table: string; tid: number; problems: readonly FilterProblem[] }>;

/** Changes read from a log in one read transaction, under one schema. */
export type ReadResult = Readonly<{
  hash: string;
  fingerprint: SchemaColumns;
  changes: readonly RowChange[];
  /** The last log seq read (sent or skipped); 0 when nothing was read. */
  throughSeq: number;
  /** The digests asked for with `digest`, taken when this read reached the log's head. */
  verify?: VerifyResult;
}>;

export type VerifyResult = Readonly<{
  epoch: string;
  throughSeq: number;
  hash: string;
  fingerprint: SchemaColumns;
  /** The columns digested (those asked for that exist, then the key columns). */
  columns: readonly string[];
  /** Columns asked for that the table does not have now. */
  missing: readonly string[];
  digests: { bucket: number; rows: number; digest: string }[];
}>;

export type Counter = Readonly<{ tid: number; name: string; seq: number; epoch: string }>;

/** The schema changed under a reader that asked for one schema (an upload in progress). */
export class SchemaChangedError extends Error {
  override readonly name = 'SchemaChangedError';
}

const REPLACEMENT = '\uFFFD';

/**
 * Reads the change logs (`__sluice_log_<tid>`) with the current rows they name, and trims them.
 *
 * Every read runs in one read transaction that first compares PRAGMA schema_version with the
 * version the registry was reconciled at. If a DDL came in between, the transaction ends, the
 * agent reconciles (onSchemaChanged) and the read starts over: values are never read under a
 * schema other than the one the batch names.
 *
 * Values are read with 64-bit integers on and encoded by the one codec
 * (domain/protocol/wire-values.ts); SQLite never formats them.
 */
export class Journal {
  private views = new Map<number, View>();
  private logs = new Set<string>();
  private knownVersion = -1;
  private readonly textEncoding: string;
  /** Called when the schema changed under a read; reconciles and calls setRegistry. */
  onSchemaChanged: () => void = () => undefined;

  private readonly keys: FilterKeys | undefined;
  private readonly filterOf: (table: string) => TableFilter | undefined;
  private withheldTables = new Map<number, Withheld>();

  constructor(
    private readonly db: Database.Database,
    opts: JournalOptions = {},
  ) {
    this.keys = opts.keys;
    this.filterOf = opts.filterOf ?? (() => undefined);
    this.textEncoding = (db.pragma('encoding', { simple: true }) as string).toLowerCase();
    registerBucketFunction(db);
  }

  /** The registry a reconcile produced, at the schema_version it was produced under. */
  /**
   * The tables read from now on, with their edge filters applied: the schema, hash and columns of
   * a filtered table are those of what is sent. A table whose filter cannot apply to its schema
   * now (an excluded key column, a predicate that no longer checks) is withheld and returned.
   */
  setRegistry(registry: readonly RegisteredTable[], schemaVersion: number): Withheld[] {
    const logs = (this.logs = new Set(
      this.db
        .prepare(
          `SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE '\\_\\_sluice\\_log\\_%' ESCAPE '\\'`,
        )
        .pluck()
        .all() as string[],
    ));
    this.views.clear();
    this.withheldTables.clear();
    for (const r of registry) {
      if (!logs.has(logTable(r.tid)) || !r.hash || !r.fingerprint) continue;
      const filter = this.filterOf(r.name);
      let schema = r.schema && r.schema.pk.join('\u0000') === r.keys.join('\u0000') ? r.schema : undefined;
      if (filter && schema) {
        const problems = withholdingProblems(this.db, schema, filter);
        if (problems.length > 0) {
          this.withheldTables.set(r.tid, { table: r.name, tid: r.tid, problems });
          continue;
        }
        schema = filterSchema(schema, filter);
      }
      const fingerprint = schema?.fingerprint ?? filterFingerprint(r.fingerprint, filter);
      this.views.set(r.tid, {
        tid: r.tid,
        name: r.name,
        keys: r.keys,
        ...(schema ? { schema } : {}),
        hash: filter ? schemaHash(fingerprint) : r.hash,
        fingerprint,
        ...(filter?.where !== undefined ? { where: filter.where } : {}),
      });
    }
    this.knownVersion = schemaVersion;
    return [...this.withheldTables.values()];
  }

  /** Why a table is withheld now (nothing of it may be read or sent), if it is. */
  withheld(tid: number): Withheld | undefined {
    return this.withheldTables.get(tid);
  }

  schemaVersion(): number {
    return this.db.pragma('schema_version', { simple: true }) as number;
  }

  /** The schema a table's changes are read under now. */
  tableSchema(tid: number): { hash: string; fingerprint: SchemaColumns } | undefined {
    const v = this.views.get(tid);
    return v ? { hash: v.hash, fingerprint: v.fingerprint } : undefined;
  }

  /** Run `fn` in one read transaction under the reconciled schema, reconciling first if needed. */
  private consistent<T>(fn: () => T): T {
    for (let attempt = 0; attempt < 5; attempt++) {
      const out = this.db.transaction(() => {
        if (this.schemaVersion() !== this.knownVersion) return { stale: true as const };
        return { stale: false as const, value: fn() };
      })();
      if (!out.stale) return out.value;
      this.onSchemaChanged();
    }
    throw new Error(
      'the application schema kept changing while the agent read it; retrying on the next tick',
    );
  }

  private readStatement(v: View): Database.Statement {
    if (v.read) return v.read;
    const log = logTable(v.tid);
    const ks = keyColumns(v.keys.length);
    const lk = ks.map((k) => `l.${k}`).join(', ');
    let sql: string;
    if (v.schema?.where !== undefined) sql = filteredReadSql(v.tid, v.schema, ks);
    else if (v.schema) {
      const s = v.schema;
      const t = quoteIdent(s.name);
      const on = s.pk.map((c, i) => `__t.${quoteIdent(c)} IS l.${ks[i]}`).join(' AND ');
      // A row was found: its rowid is not NULL (WITHOUT ROWID: its key columns are NOT NULL).
      const alias = ['rowid', '_rowid_', 'oid'].find((a) => !s.columns.some((c) => c.toLowerCase() === a));
      const found =
        !s.withoutRowid && alias ? `__t.${alias} IS NOT NULL` : `__t.${quoteIdent(s.pk[0]!)} IS NOT NULL`;
      const cols = s.columns.map((c) => `__t.${quoteIdent(c)}`).join(', ');
      sql =
        `SELECT l.seq, l.op, ${lk}, ${found}, ${cols} FROM ${log} AS l ` +
        `LEFT JOIN ${t} AS __t ON l.op IN ('I', 'U') AND ${on} WHERE l.seq > ? ORDER BY l.seq LIMIT ?`;
    } else {
      sql = `SELECT l.seq, l.op, ${lk}, 0 FROM ${log} AS l WHERE l.seq > ? ORDER BY l.seq LIMIT ?`;
    }
    v.read = this.db.prepare(sql).raw(true).safeIntegers(true);
    return v.read;
  }

  /**
   * Up to `limit` changes after `afterSeq`, oldest first, with the rows as they are now. With
   * `expectHash`, throws SchemaChangedError when the table's schema is another one.
   */
  /**
   * Up to `limit` changes after `afterSeq`. With `digest` (a verify's columns), a read that
   * reaches the log's head also digests the table in the same read transaction: the digests are
   * then exactly what the mirror holds once every batch through that read is applied, because
   * each row's last change is in it and carries the row as it is in this snapshot.
   */
  read(
    tid: number,
    afterSeq: number,
    limit: number,
    expectHash?: string,
    digest?: readonly string[],
  ): ReadResult | undefined {
    return this.consistent(() => {
      const v = this.views.get(tid);
      if (!v) return undefined;
      if (expectHash !== undefined && v.hash !== expectHash) {
        throw new SchemaChangedError(`schema of ${v.name} changed`);
      }
      const rows = this.readStatement(v).all(afterSeq, limit) as unknown[][];
      const changes: RowChange[] = [];
      let throughSeq = 0;
      const decodeAll = () => {
        const epoch = this.epochOf(tid);
        for (const r of rows) {
          const seq = Number(r[0] as bigint);
          throughSeq = seq;
          const c = this.decode(v, seq, r, epoch);
          if (c) changes.push(c);
        }
      };
      if (v.where !== undefined) this.filterKeys().batch(decodeAll);
      else decodeAll();
      const head = this.maxSeq(tid);
      const verify =
        digest && Math.max(throughSeq, afterSeq) >= head ? this.digestOf(tid, v, digest, head) : undefined;
      return { hash: v.hash, fingerprint: v.fingerprint, changes, throughSeq, ...(verify ? { verify } : {}) };
    });
  }

  private filterKeys(): FilterKeys {
    if (!this.keys) throw new Error('a table with a row predicate needs the filter key set (state.db)');
    return this.keys;
  }

  private epochOf(tid: number): string {
    return this.db.prepare(`SELECT epoch FROM ${SEQ} WHERE tid = ?`).pluck().get(tid) as string;
  }

  /** The table has a row predicate: some of its log entries are never sent. */
  hasPredicate(tid: number): boolean {
    return this.views.get(tid)?.where !== undefined;
  }

  /** Every change of the table through `seq` of `epoch` is confirmed by the cloud. */
  confirmed(tid: number, epoch: string, seq: number): void {
    if (this.views.get(tid)?.where !== undefined) this.keys?.confirmed(tid, epoch, seq);
  }

  private decode(v: View, seq: number, r: unknown[], epoch: string): RowChange | undefined {
    const op = r[1] as string;
    const nk = v.keys.length;
    if (op === 'X') return undefined;
    if (op === 'S') {
      const sweep = JSON.parse(r[2] as string) as NonNullable<RowChange['sweep']>;
      return { commit_seq: seq, op: 'sweep', pk: {}, row: null, sweep };
    }
    const found = r[2 + nk] === 1n || r[2 + nk] === 1;
    if (v.where !== undefined) {
      // A row predicate: the row goes when it matches now; otherwise the cloud gets a delete only
      // if it may hold the key (the row left the filter), and nothing at all if not.
      const keys = this.filterKeys();
      const key = FilterKeys.keyOf(this.logKey(v, r));
      const match = r[3 + nk] === 1n || r[3 + nk] === 1;
      if ((op === 'I' || op === 'U') && found && match) {
        const c = this.decodeRow(v, seq, r, op, 4 + nk);
        if (c.op !== 'refused') keys.sent(v.tid, key, epoch, seq);
        return c;
      }
      if (!keys.has(v.tid, key)) return undefined;
      const c = this.decodeDelete(v, seq, r);
      if (c.op === 'delete') keys.deleted(v.tid, key, epoch, seq);
      return c;
    }
    if ((op === 'I' || op === 'U') && found && v.schema) return this.decodeRow(v, seq, r, op, 3 + nk);
    // A delete, or an insert/update whose row is gone by now (a later entry deletes it anyway).
    return this.decodeDelete(v, seq, r);
  }

  /** The key as the log holds it (what the key set is keyed by). */
  private logKey(v: View, r: unknown[]): Record<string, WireValue> {
    const pk: Record<string, WireValue> = {};
    v.keys.forEach((k, i) => (pk[k] = encodeSqliteValue(r[2 + i] as SqliteValue)));
    return pk;
  }

  /** An insert/update with the row's values from column `first` of the read on. */
  private decodeRow(v: View, seq: number, r: unknown[], op: string, first: number): RowChange {
    const s = v.schema!;
    const row: Record<string, WireValue> = {};
    let bad: string | undefined;
    s.columns.forEach((c, i) => {
      const val = r[first + i] as SqliteValue;
      if (bad === undefined && typeof val === 'string' && val.includes(REPLACEMENT)) {
        if (!this.textIsExact(val, this.rowTextBytes(v, seq, c))) bad = c;
      }
      row[c] = encodeSqliteValue(val);
    });
    const pk: Record<string, WireValue> = {};
    for (const k of s.pk) pk[k] = row[k] ?? null;
    if (bad !== undefined) return this.refuseText(v, seq, bad);
    return { commit_seq: seq, op: op === 'I' ? 'insert' : 'update', pk, row };
  }

  private decodeDelete(v: View, seq: number, r: unknown[]): RowChange {
    const pk: Record<string, WireValue> = {};
    let bad: string | undefined;
    v.keys.forEach((k, i) => {
      const val = r[2 + i] as SqliteValue;
      if (bad === undefined && typeof val === 'string' && val.includes(REPLACEMENT)) {
        if (!this.textIsExact(val, this.keyBytes(v, seq, i))) bad = k;
      }
      pk[k] = encodeSqliteValue(val);
    });
    if (bad !== undefined) return this.refuseText(v, seq, bad);
    return { commit_seq: seq, op: 'delete', pk, row: null };
  }

  /**
   * A TEXT value that is not valid UTF-8 cannot travel: the change goes as `refused`. Its key is
   * encoded as usual when it can be; a key column holding such text is sent as `{$blob}` of its
   * bytes (the one case a TEXT key travels as a BLOB; docs/agent.md).
   */
  private refuseText(v: View, seq: number, column: string): RowChange {
    const raw = this.db
      .prepare(`SELECT ${keyColumns(v.keys.length).join(', ')} FROM ${logTable(v.tid)} WHERE seq = ?`)
      .raw(true)
      .safeIntegers(true)
      .get(seq) as SqliteValue[];
    const pk: Record<string, WireValue> = {};
    v.keys.forEach((k, i) => {
      const val = raw[i] ?? null;
      if (typeof val === 'string' && val.includes(REPLACEMENT)) {
        const bytes = this.keyBytes(v, seq, i);
        pk[k] = this.textIsExact(val, bytes) ? val : encodeSqliteValue(bytes);
      } else pk[k] = encodeSqliteValue(val);
    });
    return {
      commit_seq: seq,
      op: 'refused',
      pk,
      row: null,
      refusal: {
        code: 'unencodable_text',
        column,
        message: `column ${column} holds TEXT that is not valid UTF-8; it cannot be carried as JSON text`,
      },
    };
  }

  private rowTextBytes(v: View, seq: number, column: string): Uint8Array {
    const s = v.schema!;
    const ks = keyColumns(v.keys.length);
    const on = s.pk.map((c, i) => `__t.${quoteIdent(c)} IS l.${ks[i]}`).join(' AND ');
    return this.db
      .prepare(
        `SELECT CAST(__t.${quoteIdent(column)} AS BLOB) FROM ${logTable(v.tid)} AS l JOIN ${quoteIdent(s.name)} AS __t ON ${on} WHERE l.seq = ?`,
      )
      .pluck()
      .get(seq) as Uint8Array;
  }

  private keyBytes(v: View, seq: number, i: number): Uint8Array {
    return this.db
      .prepare(`SELECT CAST(k${i} AS BLOB) FROM ${logTable(v.tid)} WHERE seq = ?`)
      .pluck()
      .get(seq) as Uint8Array;
  }

  /** SQLite hands invalid UTF-8 to JS with U+FFFD in place: the bytes tell whether that is what is stored. */
  private textIsExact(text: string, bytes: Uint8Array | null | undefined): boolean {
    if (!bytes) return true;
    const enc = this.textEncoding;
    let mine: Buffer;
    if (enc === 'utf-8') mine = Buffer.from(text, 'utf8');
    else {
      mine = Buffer.from(text, 'utf16le');
      if (enc === 'utf-16be') mine.swap16();
    }
    return mine.equals(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }

  /**
   * Per-bucket digests of the table over `columns` (those that exist now) and its key columns,
   * when nothing after `sentSeq` is in the log (every change is in a batch already), in one read
   * transaction; undefined while changes wait to be read (`read` with `digest` takes it then).
   */
  verify(tid: number, columns: readonly string[], sentSeq: number): VerifyResult | undefined {
    return this.consistent(() => {
      const v = this.views.get(tid);
      const head = this.maxSeq(tid);
      return v && head <= sentSeq ? this.digestOf(tid, v, columns, head) : undefined;
    });
  }

  private digestOf(tid: number, v: View, columns: readonly string[], throughSeq: number): VerifyResult {
    const epoch = this.db.prepare(`SELECT epoch FROM ${SEQ} WHERE tid = ?`).pluck().get(tid) as string;
    const have = new Set(v.schema?.columns ?? v.fingerprint.columns.map((c) => c.name));
    const missing = columns.filter((c) => !have.has(c));
    const used = [...new Set([...columns.filter((c) => have.has(c)), ...v.keys])];
    const digests = new BucketDigests();
    if (v.schema) {
      const it = this.db
        .prepare(
          `SELECT ${used.map(quoteIdent).join(', ')} FROM ${quoteIdent(v.schema.name)}` +
            // The same rows the batches carry: those matching the predicate now.
            (v.schema.where !== undefined ? ` WHERE (${v.schema.where})` : ''),
        )
        .raw(true)
        .safeIntegers(true)
        .iterate() as IterableIterator<SqliteValue[]>;
      for (const vals of it) {
        const row: Record<string, WireValue> = {};
        used.forEach((c, i) => (row[c] = encodeSqliteValue(vals[i])));
        const pk: Record<string, WireValue> = {};
        for (const k of v.keys) pk[k] = row[k] ?? null;
        digests.addRow(pk, row, used);
      }
    }
    return {
      epoch,
      throughSeq,
      hash: v.hash,
      fingerprint: v.fingerprint,
      columns: used,
      missing,
      digests: digests.list(),
    };
  }

  maxSeq(tid: number): number {
    if (!this.logs.has(logTable(tid))) return 0;
    return Number(
      this.db
        .prepare(`SELECT coalesce(max(seq), 0) FROM ${logTable(tid)}`)
        .pluck()
        .get() as number,
    );
  }

  /** Every registered table's epoch and largest commit_seq journaled so far. */
  counters(): Counter[] {
    const regs = this.db.prepare(`SELECT tid, name, epoch FROM ${SEQ} ORDER BY tid`).all() as {
      tid: number;
      name: string;
      epoch: string;
    }[];
    return regs.filter((r) => this.views.has(r.tid)).map((r) => ({ ...r, seq: this.maxSeq(r.tid) }));
  }

  /**
   * The part of [first, last] an upload can carry: from the first entry up to before the first
   * sweep (a sweep goes in an ordinary batch after the rows it follows). Its size is estimated.
   */
  uploadPlan(
    tid: number,
    first: number,
    last: number,
  ): { firstSeq: number; lastSeq: number; rows: number; bytes: number } | undefined {
    const log = logTable(tid);
    const head = this.db
      .prepare(`SELECT min(seq) FROM ${log} WHERE seq BETWEEN ? AND ? AND op IN ('I', 'U', 'D')`)
      .pluck()
      .get(first, last) as number | null;
    if (head === null) return undefined;
    const cut = this.db
      .prepare(`SELECT min(seq) FROM ${log} WHERE seq > ? AND seq <= ? AND op = 'S'`)
      .pluck()
      .get(head, last) as number | null;
    const end = cut === null ? last : cut - 1;
    const size = this.db
      .prepare(
        `SELECT count(*) AS rows, max(seq) AS last FROM ${log} WHERE seq BETWEEN ? AND ? AND op != 'X'`,
      )
      .get(head, end) as { rows: number; last: number };
    if (size.rows === 0) return undefined;
    return { firstSeq: head, lastSeq: size.last, rows: size.rows, bytes: size.rows * 100 };
  }

  /**
   * Remove confirmed entries. Only ever called with a seq the cloud has confirmed. The entry with
   * the largest seq stays, turned into an `X` placeholder when it is confirmed too: SQLite
   * allocates the next commit_seq from it, and a log holds exactly its pending changes besides.
   */
  deleteThrough(tid: number, seq: number): number {
    const log = logTable(tid);
    const keys = keyColumns(this.views.get(tid)?.keys.length ?? 0)
      .map((k) => `, ${k} = NULL`)
      .join('');
    return this.db.transaction(() => {
      const n = this.db
        .prepare(`DELETE FROM ${log} WHERE seq <= ? AND seq < (SELECT max(seq) FROM ${log})`)
        .run(seq).changes;
      this.db.prepare(`UPDATE ${log} SET op = 'X'${keys} WHERE seq <= ? AND op <> 'X'`).run(seq);
      return n;
    })();
  }

  private sizeExpr(tid: number): string {
    const v = this.views.get(tid);
    const ks = keyColumns(v?.keys.length ?? 1);
    return ks.map((k) => `coalesce(length(${k}), 0)`).join(' + ') + ' + 24';
  }

  /** Size of what is still pending after `afterSeq` (a scan; used sparingly). */
  pendingSize(tid: number, afterSeq: number): { rows: number; bytes: number } {
    const r = this.db
      .prepare(
        `SELECT count(*) AS rows, sum(${this.sizeExpr(tid)}) AS bytes FROM ${logTable(tid)} WHERE seq > ?`,
      )
      .get(afterSeq) as { rows: number; bytes: number | null };
    return { rows: r.rows, bytes: r.bytes ?? 0 };
  }

  /** The seq below which dropping the oldest entries frees at least `bytes`. */
  seqFreeing(tid: number, afterSeq: number, bytes: number): { lastSeq: number; rows: number; bytes: number } {
    const it = this.db
      .prepare(`SELECT seq, ${this.sizeExpr(tid)} AS b FROM ${logTable(tid)} WHERE seq > ? ORDER BY seq`)
      .iterate(afterSeq) as IterableIterator<{ seq: number; b: number }>;
    let freed = 0;
    let rows = 0;
    let lastSeq = afterSeq;
    for (const r of it) {
      freed += r.b;
      rows++;
      lastSeq = r.seq;
      if (freed >= bytes) break;
    }
    return { lastSeq, rows, bytes: freed };
  }

  /**
   * Drop entries through `lastSeq` and start a new journal_epoch whose commit_seq restarts at 1
   * for the entries left. The cloud sees a new epoch, not a silent hole in the old one.
   */
  dropAndRenumber(tid: number, lastSeq: number, newEpoch: string): { dropped: number; kept: number } {
    const log = logTable(tid);
    const tx = this.db.transaction(() => {
      const dropped = this.db.prepare(`DELETE FROM ${log} WHERE seq <= ?`).run(lastSeq).changes;
      // Two passes through negative numbers: a single `seq - n` update could collide with an
      // entry not yet renumbered, whatever order SQLite visits them in.
      const kept = this.db
        .prepare(`UPDATE ${log} SET seq = -(seq - ?) WHERE seq > ?`)
        .run(lastSeq, lastSeq).changes;
      this.db.prepare(`UPDATE ${log} SET seq = -seq WHERE seq < 0`).run();
      // A kept sweep names a commit_seq of the old numbering (agent-written JSON, not a value).
      this.db
        .prepare(
          `UPDATE ${log} SET k0 = json_set(k0, '$.since_commit_seq', max(1, json_extract(k0, '$.since_commit_seq') - ?)) WHERE op = 'S'`,
        )
        .run(lastSeq);
      this.db.prepare(`UPDATE ${SEQ} SET epoch = ? WHERE tid = ?`).run(newEpoch, tid);
      return { dropped, kept };
    });
    return tx.immediate();
  }
}

/**
 * The read of a table with a row predicate. The table is read through a subquery whose columns
 * are renamed c0…, so the predicate's names resolve among the table's columns only (never the
 * log's seq, op, k0…), and SQLite evaluates it as a WHERE would (NULL is no match).
 */
function filteredReadSql(tid: number, s: TableSchema, ks: readonly string[]): string {
  const cols = s.columns.map((c, i) => `${quoteIdent(c)} AS c${i}`);
  const keyAt = s.pk.map((k) => s.columns.indexOf(k));
  if (keyAt.some((i) => i < 0)) throw new Error(`key columns of ${s.name} are not among the columns sent`);
  const sub =
    `SELECT ${cols.join(', ')}, 1 AS f, CASE WHEN (${s.where!}) THEN 1 ELSE 0 END AS m ` +
    `FROM ${quoteIdent(s.name)}`;
  const on = keyAt.map((ci, i) => `__t.c${ci} IS l.${ks[i]}`).join(' AND ');
  const lk = ks.map((k) => `l.${k}`).join(', ');
  const out = s.columns.map((_, i) => `__t.c${i}`).join(', ');
  return (
    `SELECT l.seq, l.op, ${lk}, __t.f IS NOT NULL, __t.m, ${out} FROM ${logTable(tid)} AS l ` +
    `LEFT JOIN (${sub}) AS __t ON l.op IN ('I', 'U') AND ${on} WHERE l.seq > ? ORDER BY l.seq LIMIT ?`
  );
}
