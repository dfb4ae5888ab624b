import type Database from 'better-sqlite3';
import type { Receipt, WireValue } from '../../domain/protocol/contracts';
import { readTableSchema, type TableSchema } from '../capture/schema';
import { quoteIdent } from '../capture/sql';
import { filterSchema, type TableFilter } from '../capture/filter';
import { encodeSqliteValue, type SqliteValue } from '../../domain/protocol/wire-values';
import type { StateStore } from '../state/state-store';
import type { TelemetryCursor } from '../state/tables';
import { type Inflight, Lane, type LaneDeps } from './lane';

type TelemetryInflight = Inflight & { batchSeq: number; endCursor: TelemetryCursor };

export type TelemetryLaneDeps = LaneDeps &
  Readonly<{
    db: Database.Database;
    state: StateStore;
    newId: () => string;
    maxRows: number;
    maxBytes: number;
    timestampColumn: string;
    /** Edge filters: the columns and rows sent (docs/agent.md, "Filters"). */
    filter?: TableFilter;
  }>;

const NAIVE_DATETIME = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)$/;

/**
 * The wire `ts` of a timestamp value. Text without a zone (SQLite's datetime() output) is UTC;
 * numbers are Unix seconds, or milliseconds when larger than 1e11.
 */
export function timestampToIso(v: SqliteValue): string | undefined {
  if (typeof v === 'string') {
    const m = NAIVE_DATETIME.exec(v.trim());
    const text = m ? `${m[1]}T${m[2]}Z` : v.trim();
    return Number.isNaN(Date.parse(text)) ? undefined : text;
  }
  if (typeof v === 'number' || typeof v === 'bigint') {
    const n = Number(v);
    const ms = Math.abs(n) < 1e11 ? n * 1000 : n;
    const d = new Date(ms);
    return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
  }
  return undefined;
}

/**
 * The telemetry strategy of one table: a cursor (timestamp, rowid) over the table itself, batches
 * with a strictly increasing batch_seq. The batch_seq and payload are recorded before publishing,
 * so a re-send after a crash is byte-identical even if the application pruned the rows.
 */
export class TelemetryLane extends Lane {
  readonly kind = 'telemetry' as const;
  declare readonly inflight: TelemetryInflight[];
  private batchSeq: number;
  private confirmedCursor: TelemetryCursor | null;
  private sentCursor: TelemetryCursor | null;
  private announcedHash: string | null;
  private schema: TableSchema | undefined;
  private readonly query: Database.Statement;
  private readonly queryFirst: Database.Statement;

  constructor(
    table: string,
    private readonly t: TelemetryLaneDeps,
  ) {
    super(table, t);
    const st = t.state.tables.get(table)!;
    this.batchSeq = st.batchSeq;
    this.confirmedCursor = st.cursor;
    this.sentCursor = st.cursor;
    this.paused = st.paused;
    this.announcedHash = st.announcedHash;
    this.refreshSchema();
    const cols = this.schema!.columns.map(quoteIdent).join(', ');
    const ts = quoteIdent(t.timestampColumn);
    const from = quoteIdent(table);
    // A row outside the predicate when the cursor passes it is never sent (samples are not updated).
    const where = t.filter?.where !== undefined ? ` AND (${t.filter.where})` : '';
    this.query = t.db
      .prepare(
        `SELECT rowid, ${cols} FROM ${from} WHERE ${ts} IS NOT NULL AND (${ts} > ? OR (${ts} = ? AND rowid > ?))${where} ORDER BY ${ts}, rowid LIMIT ?`,
      )
      .raw(true)
      .safeIntegers(true);
    this.queryFirst = t.db
      .prepare(
        `SELECT rowid, ${cols} FROM ${from} WHERE ${ts} IS NOT NULL${where} ORDER BY ${ts}, rowid LIMIT ?`,
      )
      .raw(true)
      .safeIntegers(true);
    for (const rec of t.state.batches.inflight(table)) {
      if (rec.kind !== 'telemetry' || !rec.payload || rec.batchSeq === null || !rec.endCursor) continue;
      this.inflight.push({
        batchId: rec.batchId,
        payload: rec.payload,
        rows: (JSON.parse(rec.payload) as { row_count: number }).row_count,
        sentAt: 0,
        sends: 0,
        confirmed: false,
        batchSeq: rec.batchSeq,
        endCursor: rec.endCursor,
      });
      this.sentCursor = rec.endCursor;
    }
  }

  refreshSchema(): void {
    const full = readTableSchema(this.t.db, this.table);
    this.schema = full && filterSchema(full, this.t.filter);
  }

  /** The schema as sent (filtered). */
  get sentSchema(): Pick<TableSchema, 'hash' | 'fingerprint'> | undefined {
    return this.schema;
  }

  pendingRows(): number {
    return 0; // not journaled: the rows stay in the application's table
  }

  pump(): void {
    if (this.paused || !this.draining) return;
    while (!this.windowFull()) {
      if (!this.buildNext()) {
        this.draining = false;
        return;
      }
    }
  }

  private buildNext(): boolean {
    const schema = this.schema;
    if (!schema) return false;
    const c = this.sentCursor;
    const raw = (
      c ? this.query.all(c.ts, c.ts, BigInt(c.rowid), this.t.maxRows) : this.queryFirst.all(this.t.maxRows)
    ) as SqliteValue[][];
    if (raw.length === 0) return false;
    const tsIndex = schema.columns.indexOf(this.t.timestampColumn);
    const withSchema = schema.hash !== this.announcedHash;
    const batchId = this.t.newId();
    const batchSeq = this.batchSeq + 1;
    const rows: string[] = [];
    // Envelope: fixed fields, two timestamps, the table name, and schema_columns when sent.
    let bytes =
      400 +
      Buffer.byteLength(JSON.stringify(this.table)) +
      (withSchema ? Buffer.byteLength(JSON.stringify(schema.fingerprint)) : 0);
    let minTs = '';
    let maxTs = '';
    let minMs = Infinity;
    let maxMs = -Infinity;
    let end: TelemetryCursor | undefined;
    for (const r of raw) {
      const tsRaw = r[tsIndex + 1] as SqliteValue;
      const rowid = Number(r[0] as bigint);
      const iso = timestampToIso(tsRaw);
      const cursorTs = typeof tsRaw === 'bigint' ? Number(tsRaw) : (tsRaw as string | number);
      if (iso === undefined) {
        this.t.log.warn(
          { event: 'telemetry_bad_timestamp', table: this.table, rowid },
          `row ${rowid} of ${this.table} has a timestamp that is not a date; skipped`,
        );
        end = { ts: cursorTs, rowid };
        continue;
      }
      const fields: Record<string, WireValue> = {};
      schema.columns.forEach((name, i) => {
        if (i !== tsIndex) fields[name] = encodeSqliteValue(r[i + 1] as SqliteValue);
      });
      const json = JSON.stringify({ ts: iso, fields });
      const size = Buffer.byteLength(json) + 1;
      if (rows.length > 0 && bytes + size > this.t.maxBytes) break;
      rows.push(json);
      bytes += size;
      const ms = Date.parse(iso);
      if (ms < minMs) [minMs, minTs] = [ms, iso];
      if (ms > maxMs) [maxMs, maxTs] = [ms, iso];
      end = { ts: cursorTs, rowid };
    }
    if (!end) return false;
    if (rows.length === 0) {
      this.sentCursor = end;
      return true;
    }
    const head = JSON.stringify({
      format_version: 1,
      capture_strategy: 'sqlite_telemetry_batch_v1',
      batch_id: batchId,
      batch_seq: batchSeq,
      source_table: this.table,
      schema_hash: schema.hash,
      ...(withSchema ? { schema_columns: schema.fingerprint } : {}),
      cursor_start_ts: minTs,
      cursor_end_ts: maxTs,
      row_count: rows.length,
    });
    const payload = `${head.slice(0, -1)},"rows":[${rows.join(',')}]}`;
    this.t.state.batches.recordTelemetryBatch({
      batchId,
      table: this.table,
      batchSeq,
      endCursor: end,
      payload,
      withSchema,
      hash: schema.hash,
    });
    this.batchSeq = batchSeq;
    this.sentCursor = end;
    if (withSchema) this.announcedHash = schema.hash;
    const f: TelemetryInflight = {
      batchId,
      payload,
      rows: rows.length,
      sentAt: 0,
      sends: 0,
      confirmed: false,
      batchSeq,
      endCursor: end,
    };
    this.inflight.push(f);
    this.send(f);
    return true;
  }

  onReceipt(r: Receipt): boolean {
    if (!this.inflight.some((x) => x.batchId === r.batch_id)) return false;
    this.confirmById(r.batch_id);
    return true;
  }

  protected confirmById(batchId: string): void {
    const done = this.popConfirmed(batchId) as TelemetryInflight[];
    if (done.length === 0) return;
    this.confirmDone(done);
  }

  private confirmDone(done: TelemetryInflight[]): void {
    const last = done[done.length - 1]!;
    this.confirmedCursor = last.endCursor;
    this.t.state.batches.confirmTelemetry(
      this.table,
      last.endCursor,
      done.map((d) => d.batchId),
    );
    for (const d of done) {
      this.t.counters.confirmedBatches++;
      this.t.counters.confirmedRows += d.rows;
      this.t.log.info(
        {
          event: 'confirm',
          table: this.table,
          batch_id: d.batchId,
          batch_seq: d.batchSeq,
          via: this.t.delivery,
        },
        'telemetry batch confirmed',
      );
    }
    this.t.wake();
  }

  pause(watermark: number | undefined): void {
    this.paused = true;
    this.t.state.tables.setPause(this.table, true, watermark ?? null, null);
    if (watermark !== undefined) this.acceptThrough(watermark);
    this.t.log.warn(
      { event: 'pause', table: this.table, server_watermark: watermark },
      `cloud paused ${this.table}: telemetry publishing stopped for this table; rows stay in the table`,
    );
  }

  resume(watermark: number | undefined): void {
    if (watermark !== undefined) this.acceptThrough(watermark);
    this.paused = false;
    this.t.state.tables.setPause(this.table, false, null, null);
    this.draining = true;
    this.t.log.info(
      { event: 'resume', table: this.table, server_watermark: watermark },
      `cloud resumed ${this.table}: telemetry publishing continues after batch_seq ${watermark ?? 'last confirmed'}`,
    );
    this.resendAll();
    this.t.wake();
  }

  /** Batches with batch_seq ≤ watermark are accepted by the cloud. */
  private acceptThrough(w: number): void {
    const done: TelemetryInflight[] = [];
    while (this.inflight[0] && this.inflight[0].batchSeq <= w) done.push(this.inflight.shift()!);
    if (done.length > 0) this.confirmDone(done);
  }

  get cursor(): TelemetryCursor | null {
    return this.confirmedCursor;
  }
}
