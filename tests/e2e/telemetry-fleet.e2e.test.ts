/**
 * A telemetry table on 20 devices of one fleet, coalesced (docs/telemetry.md): the devices are
 * MQTT clients publishing real protocol telemetry batches to the real bridge, worker, projector
 * and API on a private nats-server, on both read stores. One registry review for the fleet; the
 * approval maps a column with auto_create_and_map, which waits (staged, `data_points`) until the
 * policy allows creating device data points; then everything is read back through the HTTP API,
 * in time buckets, and compared with aggregates computed here from the rows the devices wrote.
 */
import mqtt from 'mqtt';
import { uuidv7 } from 'uuidv7';
import { schemaHash, type SchemaColumns } from '../../domain/protocol/fingerprint';
import { readEnv } from '../../infra/config/env';
import { type Running, startRoles } from '../../cli/roles';
import { DIALECTS } from '../../projections/test-support/stores';
import { createTestDatabase, type TestDatabase } from '../support/postgres';
import { tempDir } from '../support/proc';
import { startNats, type NatsServer } from '../support/nats';
import { waitFor } from '../support/wait';
import { captureIo } from '../support/cli-io';
import { runCli } from '../../cli/program';

const PROJECTS = {
  sqlite: '0190a000-0000-7000-8000-0000000007e1',
  postgres: '0190a000-0000-7000-8000-0000000007e2',
};
const FLEETS = {
  sqlite: '7e1f1ee7-0000-7000-8000-0000000007e1',
  postgres: '7e2f1ee7-0000-7000-8000-0000000007e2',
};
const TOKEN = 'telemetry-fleet-token-0123456789';
const SLUG = 'plant-ts';
const DEVICES = 20;
const PER_BATCH = 30;
const T0 = Date.parse('2026-04-28T09:00:00Z');

const schema: SchemaColumns = {
  table_name: 'temps',
  columns: [
    { name: 'ts', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: true },
    { name: 'value_c', decl_type_affinity: 'REAL', pk_ordinal: 0, not_null: false },
    { name: 'hum', decl_type_affinity: 'INTEGER', pk_ordinal: 0, not_null: false },
  ],
};

type Row = { ts: string; fields: { value_c: number; hum: number | null } };
type Written = { device: string; ms: number; row: Row };

/** Device d's rows of batch b: one every 13 s, offset per device, values from (d, i) only. */
function rowsOf(d: number, b: number): Row[] {
  return Array.from({ length: PER_BATCH }, (_, k) => {
    const i = b * PER_BATCH + k;
    return {
      ts: new Date(T0 + i * 13_000 + d * 397).toISOString(),
      fields: {
        // Never whole (a whole REAL has another wire form), in eighths: sums are exact doubles.
        value_c: 18.125 + ((i * 7 + d * 11) % 40) * 0.25,
        hum: (i + d) % 9 === 0 ? null : 30 + ((i * 5 + d) % 50),
      },
    };
  });
}

function telemetryBatch(rows: Row[], seq: number) {
  return {
    format_version: 1,
    capture_strategy: 'sqlite_telemetry_batch_v1',
    batch_id: uuidv7(),
    batch_seq: seq,
    source_table: 'temps',
    schema_hash: schemaHash(schema),
    schema_columns: schema,
    cursor_start_ts: rows[0]!.ts,
    cursor_end_ts: rows[rows.length - 1]!.ts,
    row_count: rows.length,
    rows,
  };
}

async function publish(mqttUrl: string, device: string, payload: unknown): Promise<void> {
  const c = await mqtt.connectAsync(mqttUrl, { clientId: `ts-${device}`, clean: true, protocolVersion: 4 });
  try {
    await c.publishAsync(`${SLUG}/${device}/sync/telemetry/batch`, JSON.stringify(payload), { qos: 1 });
  } finally {
    await c.endAsync();
  }
}

type Agg = { min: number | null; max: number | null; avg: number | null; count: number; last: number | null };
type Bucket = { start: string; start_ms: number; rows: number; fields: Record<string, Agg> };

/** Bucket aggregates from the written rows, computed here without the store. */
function expected(written: readonly Written[], width: number, from: number, to: number): Bucket[] {
  const by = new Map<number, Written[]>();
  for (const w of written) {
    if (w.ms < from || w.ms >= to) continue;
    const b = Math.floor(w.ms / width) * width;
    by.set(b, [...(by.get(b) ?? []), w]);
  }
  return [...by.keys()]
    .sort((a, b) => a - b)
    .map((b) => {
      const ws = by.get(b)!;
      const latest = ws.reduce((x, y) => (y.ms > x.ms || (y.ms === x.ms && y.device > x.device) ? y : x));
      const agg = (f: 'value_c' | 'hum'): Agg => {
        const vs = ws.map((w) => w.row.fields[f]).filter((v): v is number => v !== null);
        return {
          min: vs.length ? Math.min(...vs) : null,
          max: vs.length ? Math.max(...vs) : null,
          avg: vs.length ? vs.reduce((s, v) => s + v, 0) / vs.length : null,
          count: vs.length,
          last: latest.row.fields[f],
        };
      };
      return {
        start: new Date(b).toISOString(),
        start_ms: b,
        rows: ws.length,
        fields: { temperature: agg('value_c'), hum: agg('hum') },
      };
    });
}

type Lineage = {
  lineage_id: string;
  device_id: string;
  device_name: string;
  status: string;
  pause_reasons: string[];
  staged_rows: number;
  materialized_rows: number;
};

let nats: NatsServer;
beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  await nats?.stop();
});

describe.each(DIALECTS)('a telemetry table on %s, coalesced across a fleet of 20 devices', (dialect) => {
  const PROJECT = PROJECTS[dialect];
  const FLEET = FLEETS[dialect];
  let cloud: Running | undefined;
  let pg: TestDatabase | undefined;
  let base = '';

  const call = async <T>(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; body: T }> => {
    const r = await fetch(`${base}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${TOKEN}`,
        ...(body !== undefined ? { 'content-type': 'application/json', 'idempotency-key': uuidv7() } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return { status: r.status, body: (await r.json()) as T };
  };
  const get = async <T>(path: string): Promise<T> => {
    const r = await call<T>('GET', path);
    if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  };
  const lineages = async () =>
    (await get<{ items: Lineage[] }>(`/lineages?limit=500&fleet_id=${FLEET}`)).items;

  beforeAll(async () => {
    pg = dialect === 'postgres' ? await createTestDatabase('tsfleet') : undefined;
    const env = readEnv({
      SLUICE_NATS_URL: nats.url,
      SLUICE_MQTT_URL: nats.mqttUrl,
      SLUICE_READ_STORE: pg ? pg.url : `sqlite:${tempDir('tsfleet')}/read.db`,
      SLUICE_API_PORT: '0',
      SLUICE_PROJECT_ID: PROJECT,
      SLUICE_TOPIC_FLEETS: JSON.stringify({ [SLUG]: FLEET }),
      SLUICE_BRIDGE_CLIENT_ID: `bridge-tsfleet-${dialect}`,
      SLUICE_API_TOKENS: JSON.stringify([
        {
          token: TOKEN,
          project_id: PROJECT,
          permissions: ['PROJECT_CAN_READ_DEVICES', 'PROJECT_CAN_MANAGE_DEVICES'],
          name: 'ops',
        },
      ]),
      SLUICE_LOG_LEVEL: 'silent',
    });
    cloud = await startRoles(env, ['bridge', 'worker', 'projector', 'api']);
    base = `${cloud.api!.url}/core/api/v1/projects/${PROJECT}/edge`;
    const patch = await call('PATCH', '/policy', { schema_coalescing_mode: 'fleet' });
    expect(patch.status).toBe(200);
  }, 60_000);

  afterAll(async () => {
    await cloud?.stop();
    await pg?.drop();
  });

  it('one review, data points only once the policy allows them, buckets equal to the devices’ rows', async () => {
    const tag = dialect === 'sqlite' ? 's' : 'p';
    const devices = Array.from({ length: DEVICES }, (_, i) => `${tag}ts-${String(i).padStart(2, '0')}`);
    const written: Written[] = [];
    const send = (b: number) =>
      Promise.all(
        devices.map(async (name, d) => {
          const rows = rowsOf(d, b);
          await publish(nats.mqttUrl, name, telemetryBatch(rows, b + 1));
          return rows.map((row) => ({ name, row }));
        }),
      );
    const sent0 = await send(0);

    // Every lineage waits for the fleet's registry entry with its batch staged; one review.
    await waitFor(
      async () => {
        const ls = await lineages();
        return ls.length === DEVICES && ls.every((l) => l.staged_rows === PER_BATCH) ? ls : undefined;
      },
      { timeoutMs: 30_000, message: `${DEVICES} telemetry lineages staged` },
    );
    const reviews = await waitFor(
      async () => {
        const entry = await get<{ items: { enrolled_lineages: number }[] }>(`/registry?fleet_id=${FLEET}`);
        if (entry.items[0]?.enrolled_lineages !== DEVICES) return undefined;
        return get<{ items: { review_id: string }[]; total: number }>(`/registry-reviews?fleet_id=${FLEET}`);
      },
      { timeoutMs: 20_000, message: 'every lineage enrolled' },
    );
    expect(reviews.total).toBe(1);
    expect((await get<{ total: number }>('/schema-reviews')).total).toBe(0);
    const reviewId = reviews.items[0]!.review_id;
    expect((await call('POST', `/registry-reviews/${reviewId}/claim`, { action_version: 1 })).status).toBe(
      200,
    );
    const approve = await call('POST', `/registry-reviews/${reviewId}/approve`, {
      action_version: 2,
      column_actions: [
        { column: 'ts', action: 'ignore' },
        { column: 'value_c', action: 'auto_create_and_map', data_point: 'temperature' },
      ],
    });
    expect(approve.status).toBe(200);

    // The flag is off: the approval is taken, but the lineages stay paused, rows staged, saying why.
    const held = await waitFor(
      async () => {
        const ls = await lineages();
        return ls.every((l) => l.pause_reasons.includes('data_points')) ? ls : undefined;
      },
      { timeoutMs: 30_000, message: 'lineages held for their data points' },
    );
    expect(held.every((l) => l.staged_rows === PER_BATCH && l.pause_reasons.length === 1)).toBe(true);
    const detail = await get<{ pause_details: Record<string, string> }>(`/lineages/${held[0]!.lineage_id}`);
    expect(detail.pause_details.data_points).toContain(
      'auto_create_and_map needs data point "temperature", and policy allow_auto_create_device_data_points is false',
    );
    expect((await get<{ items: unknown[] }>('/data-points')).items).toEqual([]);

    // Allowing it: each device's next batch creates its data point and releases the backlog first.
    expect((await call('PATCH', '/policy', { allow_auto_create_device_data_points: true })).status).toBe(200);
    const sent1 = await send(1);
    for (const rows of [...sent0, ...sent1]) {
      for (const { name, row } of rows) written.push({ device: name, ms: Date.parse(row.ts), row });
    }
    const active = await waitFor(
      async () => {
        const ls = await lineages();
        return ls.every((l) => l.status === 'active' && l.materialized_rows === 2 * PER_BATCH)
          ? ls
          : undefined;
      },
      { timeoutMs: 30_000, message: 'every lineage active with both batches materialized' },
    );
    const points = await get<{ items: { device_name: string; name: string; affinity: string }[] }>(
      '/data-points',
    );
    expect(points.items.map((p) => [p.device_name, p.name, p.affinity])).toEqual(
      devices.map((n) => [n, 'temperature', 'REAL']),
    );

    // Written device names → ids, as the API reports rows by device id.
    const idOf = new Map(active.map((l) => [l.device_name, l.device_id]));
    const byId = written.map((w) => ({ ...w, device: idOf.get(w.device)! }));

    // Buckets of one minute over part of the range, paged through the cursor.
    const from = new Date(T0 + 95_000).toISOString();
    const to = new Date(T0 + 700_000).toISOString();
    const buckets: Bucket[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q: string = `bucket=1m&fields=temperature,hum&from=${from}&to=${to}&limit=4${cursor ? `&cursor=${cursor}` : ''}`;
      const page: { table: string; buckets: Bucket[]; next_cursor: string | null; bucket_seconds: number } =
        await get(`/fleets/${FLEET}/telemetry/temps?${q}`);
      expect(page.table).toBe(`edge_ts_f${FLEET.replaceAll('-', '').slice(0, 8)}_temps`);
      expect(page.bucket_seconds).toBe(60);
      buckets.push(...page.buckets);
      cursor = page.next_cursor;
      pages++;
    } while (cursor !== null && pages < 100);
    const want = expected(byId, 60_000, Date.parse(from), Date.parse(to));
    expect(want.length).toBeGreaterThan(8);
    expect(buckets).toEqual(want);
    expect(buckets.reduce((s, b) => s + b.rows, 0)).toBeGreaterThan(DEVICES * PER_BATCH);

    // One device: the device filter on the fleet table and the lineage route agree with its rows.
    const one = active[5]!;
    const mine = byId.filter((w) => w.device === one.device_id);
    const viaFleet = await get<{ buckets: Bucket[] }>(
      `/fleets/${FLEET}/telemetry/temps?bucket=1h&fields=temperature,hum&device=${one.device_name}`,
    );
    const viaLineage = await get<{ buckets: Bucket[] }>(
      `/lineages/${one.lineage_id}/telemetry?bucket=3600&fields=temperature,hum`,
    );
    expect(viaFleet.buckets).toEqual(expected(mine, 3_600_000, -Infinity, Infinity));
    expect(viaLineage.buckets).toEqual(viaFleet.buckets);
    const raw = await get<{
      rows: { ts: string; values: Record<string, unknown> }[];
      next_cursor: string | null;
    }>(`/lineages/${one.lineage_id}/telemetry?fields=temperature&limit=1000`);
    expect(raw.next_cursor).toBeNull();
    expect(raw.rows.map((r) => [r.ts, r.values.temperature])).toEqual(
      mine.sort((a, b) => a.ms - b.ms).map((w) => [w.row.ts, w.row.fields.value_c]),
    );

    // Hostile or mistaken input: a coded 400 (or 404), nothing changes.
    const bad = async (path: string) => {
      const r = await call<{ code: string }>('GET', path);
      return [r.status, r.body.code];
    };
    expect(await bad(`/fleets/${FLEET}/telemetry/temps?bucket=1m&colour=red`)).toEqual([
      400,
      'invalid_request',
    ]);
    expect(await bad(`/fleets/${FLEET}/telemetry/temps?bucket=7x`)).toEqual([400, 'invalid_request']);
    expect(await bad(`/fleets/${FLEET}/telemetry/temps?fields=temperature,nope`)).toEqual([
      400,
      'unknown_field',
    ]);
    expect(
      await bad(`/fleets/${FLEET}/telemetry/temps?fields=${encodeURIComponent('x"; DROP TABLE y;--')}`),
    ).toEqual([400, 'unknown_field']);
    expect(await bad(`/fleets/${FLEET}/telemetry/temps?cursor=not-a-cursor`)).toEqual([
      400,
      'invalid_cursor',
    ]);
    expect(await bad(`/fleets/${FLEET}/telemetry/temps?from=yesterday`)).toEqual([400, 'invalid_request']);
    expect(await bad(`/fleets/${FLEET}/telemetry/${encodeURIComponent('temps"; --')}`)).toEqual([
      404,
      'not_found',
    ]);
    expect(await bad(`/telemetry/temps`)).toEqual([404, 'not_found']);
    const after = await get<{ buckets: Bucket[] }>(`/fleets/${FLEET}/telemetry/temps?bucket=1d`);
    expect(after.buckets.reduce((s, b) => s + b.rows, 0)).toBe(DEVICES * 2 * PER_BATCH);
    const tables = await get<{ items: { table_name: string; scope: string }[] }>(
      `/telemetry?fleet_id=${FLEET}`,
    );
    expect(tables.items).toHaveLength(1);

    // OpenAPI documents the routes and their query.
    const doc = (await (await fetch(`${cloud!.api!.url}/openapi.json`)).json()) as {
      paths: Record<string, { get?: { parameters?: { name: string; in: string }[] } }>;
    };
    const prefix = '/core/api/v1/projects/{project_id}/edge';
    const fleetRoute = doc.paths[`${prefix}/fleets/{fleet_id}/telemetry/{source_table}`]?.get;
    expect(
      fleetRoute?.parameters
        ?.filter((p) => p.in === 'query')
        .map((p) => p.name)
        .sort(),
    ).toEqual(['bucket', 'cursor', 'device', 'fields', 'from', 'limit', 'to']);
    for (const path of [
      '/lineages/{lineage_id}/telemetry',
      '/telemetry/{source_table}',
      '/telemetry',
      '/data-points',
    ]) {
      expect(doc.paths[`${prefix}${path}`]?.get).toBeDefined();
    }

    // The CLI reads the same through the operator client: JSON equal to the API's, text with a sparkline.
    const cli = async (...args: string[]) => {
      const io = captureIo();
      const { code } = await runCli(
        [...args, '--api', cloud!.api!.url, '--token', TOKEN, '--project', PROJECT],
        io,
        {},
      );
      return { code, out: io.stdout(), err: io.stderr() };
    };
    const range = ['--from', from, '--to', to, '--fields', 'temperature,hum', '--bucket', '1m'];
    const asJson = await cli(
      'telemetry',
      'fleet',
      FLEET,
      'temps',
      ...range,
      '--limit',
      '3',
      '--all',
      '--json',
    );
    expect(asJson.code).toBe(0);
    expect((JSON.parse(asJson.out) as { buckets: Bucket[] }).buckets).toEqual(want);
    const text = await cli('telemetry', 'fleet', FLEET, 'temps', ...range, '--all', '--chart', 'hum');
    expect(text.code).toBe(0);
    expect(text.out).toContain('temperature avg');
    expect(text.out).toMatch(new RegExp(`hum avg  [▁-█ ]{${want.length}}  `));
    const lineage = await cli('telemetry', 'read', one.lineage_id, '--fields', 'temperature', '--limit', '5');
    expect(lineage.out).toContain(mine[0]!.row.ts);
    expect(lineage.out).toContain('more: --cursor ');
    const listed = await cli('telemetry', 'points', '--device', one.device_name);
    expect(listed.out).toMatch(/temperature\s+value_c\s+REAL/);
    const wrong = await cli('telemetry', 'fleet', FLEET, 'temps', '--fields', 'nope');
    expect(wrong.code).not.toBe(0);
    expect(wrong.err).toContain('nope');
  });
});
