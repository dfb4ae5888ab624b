/**
 * Given events → rows out: hand-written lineage events applied to one projection on a real read
 * store the way the runner applies a stream message (one transaction, its after-commit actions
 * once it committed), then the projection's tables read back and compared exactly. The events go
 * straight to the projection, no NATS in between, so a table of many cases stays fast.
 */
import type { LineageEvent, StoredEvent } from '../../domain/lineage/events';
import { canonicalJson } from '../../domain/shared/canonical';
import type { AnyProjection, ApplyContext, BatchItem } from '../runner/types';
import { quoteIdent } from '../store/identifiers';
import type { ReadStore } from '../store/open';
import { LineageEvents } from './lineage';

/** One decision's events of one lineage (one stream message), by an operator when `actor` says. */
export type Message = Readonly<{ lineage_id: string; events: readonly LineageEvent[]; actor?: string }>;
/** The messages of a case, in stream order; a bare list of events is a decision of `l`. */
export type Given = readonly (readonly LineageEvent[] | Message)[];

/** Expected rows by table: exactly these rows, compared on the columns they name (the same in each row). */
export type Rows = Readonly<Record<string, readonly Readonly<Record<string, unknown>>[]>>;

/** The lineage of the specs' events, with fixed ids so that expected rows can name them. */
export const l = new LineageEvents(
  {
    project_id: 'p-spec',
    device_id: '0190a0d1-0000-7000-8000-000000000001',
    device_name: 'gw-spec',
    source_table: 'device_state',
  },
  '0190a000-0000-7000-8000-0000000000aa',
);

/** The time of the n-th message of a case (1-based): what the projection records as occurred_at. */
export const at = (n: number): string => new Date(Date.UTC(2026, 3, 28, 9, 0, n)).toISOString();

/** One decision of `l` by an operator. */
export const by = (actor: string, ...events: LineageEvent[]): Message => ({
  lineage_id: l.lineage_id,
  events,
  actor,
});

const isMessage = (g: Given[number]): g is Message => !Array.isArray(g);

/** Empty every table of the projection (its rebuild's first step): the next case starts clean. */
export async function truncate(store: ReadStore, projection: AnyProjection): Promise<void> {
  await store.db.transaction().execute((tx) => projection.truncate(tx, store.dialect));
}

/** Apply the messages in order, at stream sequences 1, 2, …, each at `at(sequence)`. */
export async function apply(store: ReadStore, projection: AnyProjection, given: Given): Promise<void> {
  const handles = new Set<string>(projection.handles);
  for (const [i, g] of given.entries()) {
    const seq = i + 1;
    const m: Message = isMessage(g) ? g : { lineage_id: l.lineage_id, events: g };
    const effects: (() => Promise<void>)[] = [];
    await store.db.transaction().execute(async (tx) => {
      const items: BatchItem[] = [];
      for (const [index, e] of m.events.entries()) {
        if (!handles.has(e.type)) continue;
        const id = `${m.lineage_id}/${seq}/${index}`;
        const event = {
          ...e,
          id,
          occurred_at: at(seq),
          metadata: { causation_id: id, correlation_id: id, ...(m.actor ? { actor: m.actor } : {}) },
        } as StoredEvent<LineageEvent>;
        const ctx: ApplyContext = {
          seq,
          index,
          lineage_id: m.lineage_id,
          occurred_at: at(seq),
          rebuilding: false,
          dialect: store.dialect,
          afterCommit: (fn) => effects.push(fn),
        };
        if (projection.applyBatch) items.push({ event, ctx });
        else await projection.apply(tx, event, ctx);
      }
      if (projection.applyBatch && items.length > 0) await projection.applyBatch(tx, items);
    });
    for (const fn of effects) await fn();
  }
}

/** Columns that hold JSON text: read back as the values they encode. */
const JSON_COLUMNS = new Set([
  'pk',
  'row',
  'sweep',
  'columns',
  'schema_columns',
  'pause_reasons',
  'pause_details',
  'journal_epochs',
  'recent_refusals',
  'divergent_buckets',
  'sample_keys',
]);

/** Rows in a stable order (by their canonical JSON), so that a comparison ignores row order. */
const sorted = <T>(rows: readonly T[]): T[] =>
  rows
    .map((r) => [canonicalJson(r), r] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([, r]) => r);

/** The rows of `table` on these columns (every column when none are named), JSON decoded. */
async function read(store: ReadStore, table: string, columns: readonly string[]) {
  const list = columns.length > 0 ? columns.map(quoteIdent).join(', ') : '*';
  const rows = await store.dialect.exec(store.db, `SELECT ${list} FROM ${quoteIdent(table)}`, []);
  return rows.map((r) =>
    Object.fromEntries(
      Object.entries(r).map(([k, v]) => [
        k,
        JSON_COLUMNS.has(k) && typeof v === 'string' ? (JSON.parse(v) as unknown) : v,
      ]),
    ),
  );
}

/**
 * Each table of `expected` holds exactly its rows, compared on the columns they name (a table
 * expected empty must be empty), in any order.
 */
export async function expectRows(store: ReadStore, expected: Rows): Promise<void> {
  const got: Record<string, unknown[]> = {};
  for (const [table, rows] of Object.entries(expected)) {
    got[table] = sorted(await read(store, table, [...new Set(rows.flatMap((r) => Object.keys(r)))]));
  }
  expect(got).toEqual(Object.fromEntries(Object.entries(expected).map(([t, rows]) => [t, sorted(rows)])));
}
