import type Database from 'better-sqlite3';

export type ControlRecord = {
  controlId: string;
  kind: string;
  table: string;
  raw: string;
  ackedAt: string | null;
  appliedAt: string | null;
};

/** The newest pause/resume control acted on for a table (replay protection, docs/security.md). */
export type ControlOrder = { table: string; issuedAt: string; controlId: string };

/** Downlink controls seen, acked and applied, and each table's newest one. */
export class ControlStore {
  constructor(
    private readonly db: Database.Database,
    private readonly now: () => string,
  ) {}

  get(id: string): ControlRecord | undefined {
    const r = this.db
      .prepare(
        'SELECT control_id, kind, table_name, raw, acked_at, applied_at FROM controls WHERE control_id = ?',
      )
      .get(id) as
      | {
          control_id: string;
          kind: string;
          table_name: string;
          raw: string;
          acked_at: string | null;
          applied_at: string | null;
        }
      | undefined;
    return r
      ? {
          controlId: r.control_id,
          kind: r.kind,
          table: r.table_name,
          raw: r.raw,
          ackedAt: r.acked_at,
          appliedAt: r.applied_at,
        }
      : undefined;
  }

  /** Remember a control before acking it: after a crash it is acked again and applied. */
  record(id: string, kind: string, table: string, raw: string): void {
    this.db
      .prepare(
        'INSERT INTO controls (control_id, kind, table_name, raw, received_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
      )
      .run(id, kind, table, raw, this.now());
  }

  markAcked(id: string): void {
    this.db.prepare('UPDATE controls SET acked_at = ? WHERE control_id = ?').run(this.now(), id);
  }

  /** Done with a control; with `order`, it is now the newest of its table, in the same transaction. */
  markApplied(id: string, outcome: string, order?: ControlOrder): void {
    this.db.transaction(() => {
      this.db
        .prepare('UPDATE controls SET applied_at = ?, outcome = ? WHERE control_id = ?')
        .run(this.now(), outcome, id);
      if (order)
        this.db
          .prepare(
            `INSERT INTO control_order (table_name, issued_at, control_id) VALUES (?, ?, ?)
             ON CONFLICT (table_name) DO UPDATE SET issued_at = excluded.issued_at, control_id = excluded.control_id`,
          )
          .run(order.table, order.issuedAt, order.controlId);
    })();
  }

  order(table: string): ControlOrder | undefined {
    const r = this.db
      .prepare('SELECT issued_at, control_id FROM control_order WHERE table_name = ?')
      .get(table) as { issued_at: string; control_id: string } | undefined;
    return r ? { table, issuedAt: r.issued_at, controlId: r.control_id } : undefined;
  }

  unacked(): ControlRecord[] {
    return (
      this.db.prepare('SELECT control_id FROM controls WHERE acked_at IS NULL ORDER BY rowid').all() as {
        control_id: string;
      }[]
    ).map((r) => this.get(r.control_id)!);
  }

  unapplied(): ControlRecord[] {
    return (
      this.db.prepare('SELECT control_id FROM controls WHERE applied_at IS NULL ORDER BY rowid').all() as {
        control_id: string;
      }[]
    ).map((r) => this.get(r.control_id)!);
  }
}
