import type Database from 'better-sqlite3';

/** Per-table progress (SPEC §3 "state.db holds per table"). */
export type TableState = {
  name: string;
  strategy: 'rows' | 'telemetry';
  epoch: string | null;
  /** Rows: last commit_seq the cloud confirmed (receipt or PUBACK); journal rows up to it are gone. */
  confirmedSeq: number;
  schemaHash: string | null;
  /** Hash and epoch whose schema_columns already went out in a batch. */
  announcedHash: string | null;
  announcedEpoch: string | null;
  paused: boolean;
  /** Epoch current when the pause arrived: the watermark is a commit_seq of that epoch. */
  pauseEpoch: string | null;
  serverWatermark: number | null;
  /** Telemetry: last batch_seq assigned, and the confirmed cursor. */
  batchSeq: number;
  cursor: TelemetryCursor | null;
};

export type TelemetryCursor = { ts: string | number; rowid: number };

type TableRow = {
  name: string;
  strategy: 'rows' | 'telemetry';
  epoch: string | null;
  confirmed_seq: number;
  schema_hash: string | null;
  announced_hash: string | null;
  announced_epoch: string | null;
  paused: number;
  pause_epoch: string | null;
  server_watermark: number | null;
  batch_seq: number;
  cursor: string | null;
};

const toTable = (r: TableRow): TableState => ({
  name: r.name,
  strategy: r.strategy,
  epoch: r.epoch,
  confirmedSeq: r.confirmed_seq,
  schemaHash: r.schema_hash,
  announcedHash: r.announced_hash,
  announcedEpoch: r.announced_epoch,
  paused: r.paused === 1,
  pauseEpoch: r.pause_epoch,
  serverWatermark: r.server_watermark,
  batchSeq: r.batch_seq,
  cursor: r.cursor ? (JSON.parse(r.cursor) as TelemetryCursor) : null,
});

/** The `tables` rows outside a batch's bookkeeping: registration, schema, pause. */
export class TableStore {
  constructor(
    private readonly db: Database.Database,
    private readonly now: () => string,
  ) {}

  get(name: string): TableState | undefined {
    const r = this.db.prepare('SELECT * FROM tables WHERE name = ?').get(name) as TableRow | undefined;
    return r ? toTable(r) : undefined;
  }

  all(): TableState[] {
    return (this.db.prepare('SELECT * FROM tables ORDER BY name').all() as TableRow[]).map(toTable);
  }

  ensure(name: string, strategy: 'rows' | 'telemetry'): TableState {
    this.db
      .prepare(
        'INSERT INTO tables (name, strategy, updated_at) VALUES (?, ?, ?) ON CONFLICT(name) DO NOTHING',
      )
      .run(name, strategy, this.now());
    return this.get(name)!;
  }

  setSchemaHash(name: string, hash: string): void {
    this.db
      .prepare('UPDATE tables SET schema_hash = ?, updated_at = ? WHERE name = ?')
      .run(hash, this.now(), name);
  }

  setPause(table: string, paused: boolean, watermark: number | null, epoch: string | null): void {
    this.db
      .prepare(
        'UPDATE tables SET paused = ?, server_watermark = ?, pause_epoch = ?, updated_at = ? WHERE name = ?',
      )
      .run(paused ? 1 : 0, watermark, epoch, this.now(), table);
  }

  /** Forget which schema went out: the next batch of the table carries schema_columns. */
  resetAnnounced(table: string): void {
    this.db
      .prepare('UPDATE tables SET announced_hash = NULL, announced_epoch = NULL WHERE name = ?')
      .run(table);
  }
}
