import type Database from 'better-sqlite3';
import type { SqliteValue } from '../../domain/protocol/wire-values';
import { keyColumns, logDdl, logTable, OLD_APPLYING, OLD_JOURNAL, quoteIdent, SCHEMA, SEQ } from './sql';

/**
 * Agents before per-table change logs kept one JSON journal, `__sluice_journal (tid, seq, op,
 * sv, data)`, where `data` was SQLite's json_array() of the row (the key only, for a delete).
 * convertOldJournal turns its pending entries into the new logs, keeping each commit_seq and the
 * table's journal_epoch, then drops the old objects. Only the keys are taken from the old JSON:
 * the values are read from the table when the entry is published, like any other.
 *
 * Runs inside the reconcile's IMMEDIATE transaction, so the old triggers (writing to the old
 * journal) are replaced in the same transaction the old journal is dropped in.
 *
 * Returns the number of entries converted, per table name.
 */
export function convertOldJournal(db: Database.Database): Record<string, number> {
  const exists = db.prepare(`SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?`).get(OLD_JOURNAL);
  if (!exists) return {};
  const converted: Record<string, number> = {};
  const regs = db.prepare(`SELECT tid, name, seq, sv FROM ${SEQ}`).all() as {
    tid: number;
    name: string;
    seq: number;
    sv: number | null;
  }[];
  const infoOf = db.prepare(`SELECT info FROM ${SCHEMA} WHERE sv = ?`).pluck();
  type Info = { columns: string[]; pk: string[] };
  const infos = new Map<number, Info>();
  const info = (sv: number): Info | undefined => {
    if (!infos.has(sv)) {
      const text = infoOf.get(sv) as string | undefined;
      if (text) infos.set(sv, JSON.parse(text) as Info);
    }
    return infos.get(sv);
  };
  for (const reg of regs) {
    const latest = reg.sv === null ? undefined : info(reg.sv);
    if (!latest || latest.pk.length === 0) continue;
    const keys = latest.pk;
    db.exec(logDdl(reg.tid, keys.length));
    const ins = db.prepare(
      `INSERT INTO ${logTable(reg.tid)} (seq, op, ${keyColumns(keys.length).join(', ')}) VALUES (?, ?, ${keys.map(() => '?').join(', ')})`,
    );
    // Pages (better-sqlite3 cannot write while a read statement iterates).
    const page = db.prepare(
      `SELECT seq, op, sv, data FROM ${OLD_JOURNAL} WHERE tid = ? AND seq > ? ORDER BY seq LIMIT 1000`,
    );
    let n = 0;
    let max = 0;
    for (;;) {
      const entries = page.all(reg.tid, max) as { seq: number; op: string; sv: number; data: string }[];
      if (entries.length === 0) break;
      for (const e of entries) {
        const at = info(e.sv) ?? latest;
        const values = parseOldArray(e.data);
        // A delete held the key in PRIMARY KEY order, an insert/update the whole row in column order.
        const names = e.op === 'D' ? at.pk : at.columns;
        const byName = new Map(names.map((c, i) => [c, values[i] ?? null]));
        ins.run(e.seq, e.op, ...keys.map((k) => byName.get(k) ?? null));
        n++;
        max = e.seq;
      }
    }
    // Nothing pending above the old counter: keep it, so no commit_seq of this epoch is reused.
    if (reg.seq > max) ins.run(reg.seq, 'X', ...keys.map(() => null));
    db.prepare(`UPDATE ${SEQ} SET keys = ? WHERE tid = ?`).run(JSON.stringify(keys), reg.tid);
    converted[reg.name] = n;
  }
  db.exec(`DROP TABLE ${quoteIdent(OLD_JOURNAL)}`);
  db.exec(`DROP TABLE IF EXISTS ${quoteIdent(OLD_APPLYING)}`);
  return converted;
}

/**
 * Parse the old journal's json_array() text into SQLite values with their storage class: an
 * integer literal is an INTEGER (exact, as bigint), a literal with a fraction or exponent a REAL
 * (SQLite wrote ±Infinity as 9.0e+999), `{"$h": HEX}` a BLOB.
 */
export function parseOldArray(text: string): SqliteValue[] {
  let i = 0;
  const fail = (): never => {
    throw new Error(`old journal entry is not the JSON it should be (offset ${i})`);
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
      if (m[1] === undefined && m[2] === undefined) return BigInt(m[0]);
      return Number(m[0]);
    }
    if (text.startsWith('null', i)) {
      i += 4;
      return null;
    }
    return fail();
  };
  const raw = value();
  ws();
  if (i !== text.length || !Array.isArray(raw)) fail();
  return (raw as unknown[]).map((v): SqliteValue => {
    if (v === null || typeof v === 'bigint' || typeof v === 'number' || typeof v === 'string') return v;
    const o = v as Record<string, unknown>;
    if (typeof o.$h === 'string') return Buffer.from(o.$h, 'hex');
    if (typeof o.$int === 'string') return BigInt(o.$int);
    return fail();
  });
}
