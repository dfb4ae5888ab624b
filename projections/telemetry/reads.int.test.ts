import { randomUUID } from 'node:crypto';
import { uuidv7 } from 'uuidv7';
import type { ColumnBinding, LineageEvent, TelemetryRow } from '../../domain/lineage/events';
import { schemaHash, type SchemaColumns } from '../../domain/protocol/fingerprint';
import { startProjector, type Projector } from '../runner/projector';
import { bindAll, TestLineage } from '../test-support/lineage';
import { startTestNats, type TestNats } from '../test-support/nats';
import { DIALECTS, openTestStore, type TestStore } from '../test-support/stores';
import {
  TelemetryQueryError,
  type TelemetrySource,
  coalescedTelemetrySource,
  lineageTelemetrySource,
  listCoalescedTelemetry,
  readTelemetryBuckets,
  readTelemetryRows,
} from './queries';

let nats: TestNats;
beforeAll(async () => {
  nats = await startTestNats();
});
afterAll(async () => {
  await nats?.stop();
});

const TEMPS: SchemaColumns = {
  table_name: 'temps',
  columns: [
    { name: 'ts', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: true },
    { name: 'value_c', decl_type_affinity: 'REAL', pk_ordinal: 0, not_null: false },
    { name: 'count', decl_type_affinity: 'INTEGER', pk_ordinal: 0, not_null: false },
    { name: 'label', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: false },
  ],
};
const BINDINGS: ColumnBinding[] = bindAll(TEMPS, {
  ts: { action: 'ignore', target: null },
  value_c: { action: 'auto_create_and_map', target: 'temperature' },
});
const T0 = Date.parse('2026-04-28T09:00:00Z');
const DEVICES = 3;
const ROWS = 40; // per device, one every 7 s: buckets of 60 s hold rows of every device

type Written = { device: string; ms: number; row: TelemetryRow };
const rowsOf = (d: number): TelemetryRow[] =>
  Array.from({ length: ROWS }, (_, i) => ({
    ts: new Date(T0 + i * 7_000 + d * 1_000).toISOString(),
    fields: {
      // Eighths, never whole (a whole REAL has another wire form): sums stay exact, so SQL and
      // this test add up to the same double.
      value_c: 20.125 + ((i * 3 + d * 5) % 17) * 0.25,
      count: i % 5 === 4 ? null : i * 10 + d,
      label: `r${i}`,
    },
  }));

/** Buckets computed here from the rows the devices wrote, independently of the store. */
function expectedBuckets(written: readonly Written[], width: number, from: number, to: number) {
  const by = new Map<number, Written[]>();
  for (const w of written) {
    if (w.ms < from || w.ms >= to) continue;
    const b = w.ms - (((w.ms % width) + width) % width);
    by.set(b, [...(by.get(b) ?? []), w]);
  }
  return [...by.keys()]
    .sort((a, b) => a - b)
    .map((b) => {
      const ws = by.get(b)!;
      const latest = [...ws].sort((x, y) => y.ms - x.ms || (y.device < x.device ? -1 : 1))[0]!;
      const agg = (f: string) => {
        const vs = ws.map((w) => w.row.fields[f]).filter((v): v is number => typeof v === 'number');
        return {
          min: vs.length ? Math.min(...vs) : null,
          max: vs.length ? Math.max(...vs) : null,
          avg: vs.length ? vs.reduce((a, v) => a + v, 0) / vs.length : null,
          count: vs.length,
          last: (latest.row.fields[f] as number | null | undefined) ?? null,
        };
      };
      return {
        start: new Date(b).toISOString(),
        start_ms: b,
        rows: ws.length,
        fields: { temperature: agg('value_c'), count: agg('count') },
      };
    });
}

async function allPages<T>(read: (cursor?: string) => Promise<{ items: T[]; next_cursor: string | null }>) {
  const out: T[] = [];
  let cursor: string | undefined;
  for (let pages = 0; pages < 1000; pages++) {
    const page = await read(cursor);
    out.push(...page.items);
    if (page.next_cursor === null) return { items: out, pages: pages + 1 };
    cursor = page.next_cursor;
  }
  throw new Error('paging did not end');
}

const answers: Record<string, unknown> = {};

describe.each(DIALECTS)('telemetry reads and coalesced telemetry tables (%s)', (kind) => {
  let t: TestStore;
  let projector: Projector;
  const project = randomUUID();
  // Random (not time-ordered) so the two runs' fleets differ in their first 8 digits.
  const fleet = randomUUID();
  const lineages: TestLineage[] = [];
  const written: Written[] = [];
  let source: TelemetrySource;

  beforeAll(async () => {
    t = await openTestStore(kind);
    projector = await startProjector({ nc: nats.nc, store: t.store, only: ['lineages', 'telemetry'] });
    const registry_id = 'a'.repeat(64);
    for (let d = 0; d < DEVICES; d++) {
      const l = new TestLineage(nats.events, {
        project_id: project,
        device_id: `0000000${d}-0000-7000-8000-000000000000`,
        device_name: `sensor-${d}`,
        source_table: 'temps',
        kind: 'telemetry',
      });
      lineages.push(l);
      const rows = rowsOf(d);
      for (const row of rows) written.push({ device: l.ids.device_id, ms: Date.parse(row.ts), row });
      const half = rows.length / 2;
      await l.append(l.registered(), l.observed(TEMPS), l.paused('schema_review'));
      // The first half waits (staged) for the registry entry; the second half arrives live.
      await l.append(l.telemetry(1, rows.slice(0, half), 'schema_review'));
      const approved: LineageEvent = {
        type: 'SchemaApprovedByRegistry',
        data: {
          registry_id,
          review_id: uuidv7(),
          schema_hash: schemaHash(TEMPS),
          scope: 'fleet',
          scope_id: fleet,
          bindings: BINDINGS,
        },
      };
      await l.append(
        approved,
        l.resumed('schema_review'),
        {
          type: 'DataPointsCreated',
          data: {
            data_points: [
              { name: 'temperature', column: 'value_c', affinity: 'REAL', action: 'auto_create_and_map' },
            ],
          },
        },
        l.released(uuidv7(), TEMPS),
      );
      await l.append(l.telemetry(2, rows.slice(half)));
    }
    await projector.waitForCaughtUp();
    source = (await coalescedTelemetrySource(t.store, project, 'fleet', fleet, 'temps', null))!;
  });
  afterAll(async () => {
    await projector?.stop();
    await t?.cleanup();
  });

  it('writes every device into one coalesced table, keyed by device and time', async () => {
    expect(source.table).toMatch(/^edge_ts_f[0-9a-f]{8}_temps$/);
    expect(source.table.slice(9, 17)).toBe(fleet.replaceAll('-', '').slice(0, 8));
    const tables = await listCoalescedTelemetry(t.store, project, { scope: 'fleet' });
    expect(tables).toEqual([
      {
        table_name: source.table,
        scope: 'fleet',
        scope_id: fleet,
        source_table: 'temps',
        fields: [
          { name: 'temperature', affinity: 'REAL' },
          { name: 'count', affinity: 'INTEGER' },
          { name: 'label', affinity: 'TEXT' },
        ],
      },
    ]);
    const points = await t.store.db
      .selectFrom('edge_data_points')
      .selectAll()
      .where('project_id', '=', project)
      .orderBy('device_name')
      .execute();
    expect(points.map((p) => [p.device_name, p.name, p.source_column, p.affinity])).toEqual(
      Array.from({ length: DEVICES }, (_, d) => [`sensor-${d}`, 'temperature', 'value_c', 'REAL']),
    );
  });

  it('pages rows in time order behind an opaque cursor, with the chosen fields only', async () => {
    const from = T0 + 30_000;
    const to = T0 + 200_000;
    const { items, pages } = await allPages((cursor) =>
      readTelemetryRows(t.store, source, {
        from_ms: from,
        to_ms: to,
        fields: ['temperature', 'label'],
        limit: 7,
        ...(cursor ? { cursor } : {}),
      }),
    );
    const expected = written
      .filter((w) => w.ms >= from && w.ms < to)
      .sort((a, b) => a.ms - b.ms || (a.device < b.device ? -1 : 1))
      .map((w) => ({
        device_id: w.device,
        ts: w.row.ts,
        time: w.row.ts,
        row_id: null,
        values: { temperature: w.row.fields.value_c, label: w.row.fields.label },
      }));
    expect(items).toEqual(expected);
    expect(pages).toBe(Math.ceil(expected.length / 7) + (expected.length % 7 === 0 ? 1 : 0));
  });

  it('aggregates buckets in SQL: min, max, avg, count and last per field', async () => {
    const from = T0 + 10_000;
    const to = T0 + 250_000;
    const { items } = await allPages((cursor) =>
      readTelemetryBuckets(t.store, source, {
        from_ms: from,
        to_ms: to,
        fields: ['temperature', 'count'],
        bucket_ms: 60_000,
        limit: 2,
        ...(cursor ? { cursor } : {}),
      }),
    );
    expect(items).toEqual(expectedBuckets(written, 60_000, from, to));
    answers[kind] = items;
    if (Object.keys(answers).length === DIALECTS.length) {
      // Both stores answered the same (the second run checks against the first).
      expect(answers[DIALECTS[0]!]).toEqual(answers[DIALECTS[DIALECTS.length - 1]!]);
    }
  });

  it("reads one device: the lineage's rows from the shared table, or the device filter", async () => {
    const l = lineages[1]!;
    const own = (await lineageTelemetrySource(t.store, project, l.lineage_id))!;
    expect(own).toMatchObject({ table: source.table, coalesced: true, device_id: l.ids.device_id });
    const mine = written.filter((w) => w.device === l.ids.device_id);
    const viaLineage = await readTelemetryBuckets(t.store, own, { bucket_ms: 3_600_000, limit: 10 });
    const viaFilter = await readTelemetryBuckets(
      t.store,
      { ...source, device_id: l.ids.device_id },
      { bucket_ms: 3_600_000, limit: 10 },
    );
    expect(viaLineage).toEqual(viaFilter);
    expect(viaLineage.items).toEqual(expectedBuckets(mine, 3_600_000, -Infinity, Infinity));
    expect(viaLineage.items[0]!.rows).toBe(ROWS);
  });

  it('refuses unknown fields, text fields in buckets and foreign cursors, with codes', async () => {
    const code = (p: Promise<unknown>) =>
      p.then(
        () => 'resolved',
        (e: unknown) => (e instanceof TelemetryQueryError ? e.code : String(e)),
      );
    expect(await code(readTelemetryRows(t.store, source, { fields: ['nope'], limit: 5 }))).toBe(
      'unknown_field',
    );
    expect(
      await code(readTelemetryRows(t.store, source, { fields: ['"; DROP TABLE x; --'], limit: 5 })),
    ).toBe('unknown_field');
    expect(
      await code(readTelemetryBuckets(t.store, source, { fields: ['label'], bucket_ms: 1000, limit: 5 })),
    ).toBe('field_not_numeric');
    const rows = await readTelemetryRows(t.store, source, { limit: 1 });
    expect(
      await code(
        readTelemetryBuckets(t.store, source, { bucket_ms: 1000, limit: 5, cursor: rows.next_cursor! }),
      ),
    ).toBe('invalid_cursor');
    expect(await code(readTelemetryRows(t.store, source, { limit: 5, cursor: '%%%' }))).toBe(
      'invalid_cursor',
    );
  });

  it('a project scope gets its own edge_ts_p… table', async () => {
    const l = new TestLineage(nats.events, {
      project_id: project,
      device_id: randomUUID(),
      device_name: 'solo',
      source_table: 'temps',
      kind: 'telemetry',
    });
    const rows = rowsOf(7).slice(0, 5);
    await l.append(l.registered(), l.observed(TEMPS));
    await l.append({
      type: 'SchemaApprovedByRegistry',
      data: {
        registry_id: 'b'.repeat(64),
        review_id: null,
        schema_hash: schemaHash(TEMPS),
        scope: 'project',
        scope_id: project,
        bindings: BINDINGS,
      },
    });
    await l.append(l.telemetry(1, rows));
    await projector.waitForCaughtUp();
    const p = (await coalescedTelemetrySource(t.store, project, 'project', project, 'temps', null))!;
    expect(p.table).toBe(`edge_ts_p${project.replaceAll('-', '').slice(0, 8)}_temps`);
    const got = await readTelemetryRows(t.store, p, { fields: ['count'], limit: 10 });
    expect(got.items.map((r) => [r.device_id, r.ts, r.values.count])).toEqual(
      rows.map((r) => [l.ids.device_id, r.ts, r.fields.count]),
    );
  });

  it('a rebuild of the projection gives the same answers', async () => {
    const read = () => readTelemetryBuckets(t.store, source, { bucket_ms: 60_000, limit: 1000 });
    const before = await read();
    await projector.rebuild('telemetry');
    await projector.waitForCaughtUp();
    source = (await coalescedTelemetrySource(t.store, project, 'fleet', fleet, 'temps', null))!;
    expect(await read()).toEqual(before);
    expect(before.items.reduce((n, b) => n + b.rows, 0)).toBe(DEVICES * ROWS);
  });

  it("deleting a lineage removes its device's rows and data points, and leaves the others", async () => {
    const l = lineages[0]!;
    await l.append(l.deleted());
    await projector.waitForCaughtUp();
    const { items } = await allPages((cursor) =>
      readTelemetryRows(t.store, source, { limit: 500, ...(cursor ? { cursor } : {}) }),
    );
    expect(items).toHaveLength((DEVICES - 1) * ROWS);
    expect(items.some((r) => r.device_id === l.ids.device_id)).toBe(false);
    const points = await t.store.db
      .selectFrom('edge_data_points')
      .select('lineage_id')
      .where('project_id', '=', project)
      .execute();
    expect(points.map((p) => p.lineage_id).sort()).toEqual(
      lineages
        .slice(1)
        .map((x) => x.lineage_id)
        .sort(),
    );
  });
});
