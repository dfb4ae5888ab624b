/**
 * Helpers for exact-replication tests: an application writer over either SQLite (better-sqlite3
 * or python3's sqlite3), the device's table and the mirror as wire values, their difference in
 * value and storage class, and `verify` driven through the API and read back from the events.
 */
import Database from 'better-sqlite3';
import type { NatsConnection } from '@nats-io/transport-node';
import type { LineageEvent } from '../../domain/lineage/events';
import type { WireValue } from '../../domain/protocol/contracts';
import {
  encodeSqliteValue,
  normalizeWire,
  type SqliteValue,
  storageClassOf,
} from '../../domain/protocol/wire-values';
import { canonicalJson } from '../../domain/shared/canonical';
import { JetStreamEventStore } from '../../infra/nats/event-store';
import { PyApp, type PyStep } from './pyapp';
import { getJson, postJson } from './stack';
import { waitFor } from './wait';

/** An application writing its database: transactions of statements, DDL, and a way out. */
export type AppWriter = Readonly<{
  kind: 'better-sqlite3' | 'python3';
  /** One transaction; resolves with the rows it changed once committed. */
  tx: (steps: readonly PyStep[]) => Promise<number>;
  ddl: (sql: string) => Promise<void>;
  close: () => Promise<void>;
}>;

export function betterSqliteWriter(path: string): AppWriter {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('busy_timeout = 30000');
  db.defaultSafeIntegers(true);
  let cache = new Map<string, Database.Statement>();
  const stmt = (sql: string) => {
    let s = cache.get(sql);
    if (!s) cache.set(sql, (s = db.prepare(sql)));
    return s;
  };
  return {
    kind: 'better-sqlite3',
    tx: async (steps) => {
      let changes = 0;
      db.transaction(() => {
        for (const s of steps) changes += stmt(s.sql).run(...(s.params ?? [])).changes;
      }).immediate();
      return changes;
    },
    ddl: async (sql) => {
      cache = new Map(); // statements prepared against the old schema go
      db.exec(sql);
    },
    close: async () => {
      db.close();
    },
  };
}

export async function pythonWriter(path: string): Promise<AppWriter> {
  const py = PyApp.open(path);
  await py.script('PRAGMA journal_mode = WAL;');
  return {
    kind: 'python3',
    tx: (steps) => py.tx(steps),
    ddl: (sql) => py.script(sql),
    close: () => py.close(),
  };
}

/** A table's rows as wire values: key text → row by (mirror) column name. */
export type WireImage = Map<string, Record<string, WireValue>>;

export const wireKeyText = (key: Readonly<Record<string, WireValue>>): string =>
  canonicalJson(Object.fromEntries(Object.entries(key).map(([k, v]) => [k, normalizeWire(v)])));

/**
 * The device's table as the mirror must hold it: the bound source columns (`bindings`: source
 * name → mirror name), each value encoded by the one codec from what SQLite stores.
 */
export function deviceWireImage(
  dbPath: string,
  table: string,
  key: readonly string[],
  bindings: Readonly<Record<string, string>>,
): WireImage {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    const cols = Object.keys(bindings);
    const rows = db
      .prepare(`SELECT ${cols.map((c) => `"${c}"`).join(', ')} FROM "${table}"`)
      .safeIntegers()
      .all() as Record<string, SqliteValue>[];
    return new Map(
      rows.map((r) => {
        const row = Object.fromEntries(cols.map((c) => [bindings[c]!, encodeSqliteValue(r[c])]));
        return [wireKeyText(Object.fromEntries(key.map((k) => [k, row[bindings[k]!]!]))), row];
      }),
    );
  } finally {
    db.close();
  }
}

export type MirrorPage = {
  items: { key: Record<string, WireValue>; row: Record<string, WireValue> }[];
  table: string | null;
  columns: { name: string; column: string; source_column: string; bound: boolean }[];
};

/** Every mirror row of a lineage as the API returns it, restricted to `mirrorColumns`. */
export async function mirrorWireImage(
  base: string,
  lineageId: string,
  key: readonly string[],
  mirrorColumns: readonly string[],
): Promise<WireImage> {
  const out: WireImage = new Map();
  for (let page = 1; ; page++) {
    const r = await getJson<MirrorPage>(`${base}/lineages/${lineageId}/mirror-rows?limit=500&page=${page}`);
    if (r.status !== 200)
      throw new Error(`GET mirror-rows of ${lineageId}: ${r.status} ${JSON.stringify(r.body)}`);
    for (const m of r.body.items) {
      const row: Record<string, WireValue> = {};
      for (const c of mirrorColumns) if (c in m.row) row[c] = m.row[c]!;
      out.set(wireKeyText(Object.fromEntries(key.map((k) => [k, m.row[k] ?? null]))), row);
    }
    if (r.body.items.length < 500) return out;
  }
}

const show = (v: WireValue | undefined): string =>
  v === undefined ? 'absent' : `${storageClassOf(normalizeWire(v))} ${JSON.stringify(normalizeWire(v))}`;

/** Every difference of key, value or storage class, one line each (empty: equal). */
export function diffImages(label: string, device: WireImage, mirror: WireImage): string[] {
  const out: string[] = [];
  for (const [k, want] of device) {
    const got = mirror.get(k);
    if (!got) {
      out.push(`${label} ${k}: missing from the mirror`);
      continue;
    }
    for (const c of Object.keys(want)) {
      const a = got[c];
      const b = want[c]!;
      if (a === undefined || canonicalJson(normalizeWire(a)) !== canonicalJson(normalizeWire(b)))
        out.push(`${label} ${k}.${c}: mirror ${show(a)} ≠ device ${show(b)}`);
    }
  }
  for (const k of mirror.keys())
    if (!device.has(k)) out.push(`${label} ${k}: in the mirror, not on the device`);
  return out;
}

export async function lineageEvents(nc: NatsConnection, lineageId: string): Promise<LineageEvent[]> {
  const store = await JetStreamEventStore.create(nc);
  return [...(await store.load(lineageId)).events];
}

export type VerifyResult = Extract<LineageEvent, { type: 'VerifyCompleted' }>['data'];

/**
 * `POST …/lineages/{id}/verify` (docs/exact-replication.md, "Verify"), then the lineage's events
 * until the VerifyCompleted of the verify it started: the events are the record of the outcome.
 */
export async function verifyLineage(
  nc: NatsConnection,
  base: string,
  lineageId: string,
  timeoutMs = 60_000,
): Promise<VerifyResult> {
  const before = new Set(
    (await lineageEvents(nc, lineageId)).flatMap((e) =>
      e.type === 'VerifyRequested' ? [e.data.verify_id] : [],
    ),
  );
  const r = await postJson<{ verify_id?: string }>(`${base}/lineages/${lineageId}/verify`, {});
  if (r.status < 200 || r.status >= 300)
    throw new Error(`POST verify of ${lineageId}: ${r.status} ${JSON.stringify(r.body)}`);
  const verifyId = await waitFor(
    async () => {
      if (r.body.verify_id) return r.body.verify_id;
      const req = (await lineageEvents(nc, lineageId)).find(
        (e) => e.type === 'VerifyRequested' && !before.has(e.data.verify_id),
      );
      return req?.type === 'VerifyRequested' ? req.data.verify_id : undefined;
    },
    { timeoutMs: 15_000, intervalMs: 200, message: `the VerifyRequested of ${lineageId}` },
  );
  return waitFor(
    async () => {
      const done = (await lineageEvents(nc, lineageId)).find(
        (e) => e.type === 'VerifyCompleted' && e.data.verify_id === verifyId,
      );
      return done?.type === 'VerifyCompleted' ? done.data : undefined;
    },
    { timeoutMs, intervalMs: 250, message: `the VerifyCompleted of verify ${verifyId} on ${lineageId}` },
  );
}

/** A row the API returned, each value in its one canonical wire spelling. */
export const wireOf = (row: Readonly<Record<string, unknown>>): Record<string, WireValue> =>
  Object.fromEntries(Object.entries(row).map(([k, v]) => [k, normalizeWire(v as WireValue)]));

/**
 * Device rows read with the storage class SQLite keeps (INTEGER as bigint, REAL as number) and
 * encoded by the one codec: what the mirror API must return for them.
 */
export function wireRows(
  db: Database.Database,
  sql: string,
  ...params: unknown[]
): Record<string, WireValue>[] {
  return (
    db
      .prepare(sql)
      .safeIntegers(true)
      .all(...params) as Record<string, SqliteValue>[]
  ).map((r) =>
    Object.fromEntries(Object.entries(r).map(([k, v]) => [k, normalizeWire(encodeSqliteValue(v))])),
  );
}
