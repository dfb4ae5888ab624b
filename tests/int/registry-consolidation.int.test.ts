/**
 * Switching a project to coalescing: device-scoped mirrors are consolidated into the project's
 * coalesced table; registry verbs over the CLI and NATS; fleet assignment by an operator. Real
 * bridge, worker, projector and API (in-process) against a private nats-server, both stores.
 */
import mqtt from 'mqtt';
import { uuidv7 } from 'uuidv7';
import { schemaHash, type SchemaColumns } from '../../domain/protocol/fingerprint';
import { readEnv } from '../../infra/config/env';
import { type Running, startRoles } from '../../cli/roles';
import { runCli } from '../../cli/program';
import { EXIT } from '../../cli/client';
import { DEVICE_STATE } from '../support/fixtures';
import { DIALECTS } from '../../projections/test-support/stores';
import { createTestDatabase, type TestDatabase } from '../support/postgres';
import { tempDir } from '../support/proc';
import { startNats, type NatsServer } from '../support/nats';
import { waitFor } from '../support/wait';

// Distinct first 8 hex digits: the runs share the nats-server, so each store folds both projects.
const PROJECTS = {
  sqlite: '0190a0c3-0000-7000-8000-0000000000c3',
  postgres: '0190a0c4-0000-7000-8000-0000000000c4',
};
const FLEET = '0190a0cf-0000-7000-8000-0000000000cf';
const TOKEN = 'registry-consolidation-token-01234';
const SLUG = 'plant';

const other: SchemaColumns = {
  table_name: 'device_state',
  columns: [
    { name: 'id', decl_type_affinity: 'TEXT', pk_ordinal: 1, not_null: true },
    { name: 'mode', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: false },
  ],
};

async function sendBatch(
  mqttUrl: string,
  device: string,
  seqs: number[],
  s = DEVICE_STATE,
  epoch = uuidv7(),
  op: 'insert' | 'delete' = 'insert',
  ids: number[] = seqs,
) {
  const c = await mqtt.connectAsync(mqttUrl, { clientId: `dev-${device}`, clean: true, protocolVersion: 4 });
  const payload = {
    format_version: 1,
    capture_strategy: 'sqlite_row_batch_v1',
    batch_id: uuidv7(),
    journal_epoch: epoch,
    source_table: s.table_name,
    schema_hash: schemaHash(s),
    schema_columns: s,
    first_commit_seq: Math.min(...seqs),
    last_commit_seq: Math.max(...seqs),
    rows: seqs.map((q, i) => ({
      commit_seq: q,
      op,
      pk: { id: ids[i] },
      row: op === 'delete' ? null : { id: ids[i], mode: `${device}-${ids[i]}` },
    })),
  };
  try {
    await c.publishAsync(`${SLUG}/${device}/sync/rows/batch`, JSON.stringify(payload), { qos: 1 });
  } finally {
    await c.endAsync();
  }
}

const hostile: SchemaColumns = {
  table_name: 'x"; DROP TABLE edge_table_lineages; --',
  columns: [
    { name: 'id', decl_type_affinity: 'INTEGER', pk_ordinal: 1, not_null: true },
    { name: 'device_id', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: false },
    { name: 'mode', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: false },
  ],
};

type Lineage = {
  lineage_id: string;
  device_id: string;
  device_name: string;
  status: string;
  materialized_rows: number;
  staged_rows: number;
  fleet_id: string | null;
  registry_state: string | null;
};

let nats: NatsServer;
beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  await nats?.stop();
});

describe.each(DIALECTS)('consolidation and registry verbs on %s', (dialect) => {
  const PROJECT = PROJECTS[dialect];
  let cloud: Running | undefined;
  let pg: TestDatabase | undefined;
  let api = '';
  let base = '';

  const get = async <T>(path: string): Promise<T> => {
    const r = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    if (!r.ok) throw new Error(`GET ${path}: ${r.status} ${await r.text()}`);
    return (await r.json()) as T;
  };
  const send = async <T>(method: string, path: string, body: unknown) => {
    const r = await fetch(`${base}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${TOKEN}`,
        'content-type': 'application/json',
        'idempotency-key': uuidv7(),
      },
      body: JSON.stringify(body),
    });
    return { status: r.status, body: (await r.json()) as T };
  };
  const cli = async (args: string[]) => {
    let stdout = '';
    let stderr = '';
    const { code } = await runCli([...args, '--api', api, '--token', TOKEN, '--project', PROJECT], {
      out: async (t) => {
        stdout += t;
      },
      err: (t) => {
        stderr += t;
      },
    });
    return { code, stdout, stderr };
  };
  const lineages = async () => (await get<{ items: Lineage[] }>('/lineages?limit=500')).items;

  beforeAll(async () => {
    pg = dialect === 'postgres' ? await createTestDatabase('consolidate') : undefined;
    const env = readEnv({
      SLUICE_NATS_URL: nats.url,
      SLUICE_MQTT_URL: nats.mqttUrl,
      SLUICE_READ_STORE: pg ? pg.url : `sqlite:${tempDir('consolidate')}/read.db`,
      SLUICE_API_PORT: '0',
      SLUICE_PROJECT_ID: PROJECT,
      SLUICE_BRIDGE_CLIENT_ID: `bridge-consolidate-${dialect}`,
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
    api = cloud.api!.url;
    base = `${api}/core/api/v1/projects/${PROJECT}/edge`;
  }, 60_000);

  afterAll(async () => {
    await cloud?.stop();
    await pg?.drop();
  });

  it('moves device mirrors into the project table when the project switches to coalescing', async () => {
    const t = dialect === 'sqlite' ? 's' : 'p';
    const [a, b] = [`${t}-a`, `${t}-b`];
    const epochA = uuidv7();
    await sendBatch(nats.mqttUrl, a, [1, 2, 3], DEVICE_STATE, epochA);
    await sendBatch(nats.mqttUrl, b, [1, 2, 3]);
    // Coalescing off: a review per lineage, approved one by one into device mirrors.
    const reviews = await waitFor(
      async () => {
        const r = await get<{ items: { review_id: string }[] }>('/schema-reviews?status=queued');
        return r.items.length === 2 ? r.items : undefined;
      },
      { message: 'two device reviews' },
    );
    for (const r of reviews) {
      expect((await cli(['reviews', 'approve', r.review_id, '--claim'])).code).toBe(0);
    }
    const before = await waitFor(
      async () => {
        const ls = await lineages();
        return ls.length === 2 && ls.every((l) => l.materialized_rows === 3) ? ls : undefined;
      },
      { message: 'device mirrors filled' },
    );
    const deviceTables = await Promise.all(
      before.map(async (l) => (await get<{ table: string }>(`/lineages/${l.lineage_id}/mirror-rows`)).table),
    );
    expect(deviceTables.every((n) => !n.startsWith('edge_mirror_p'))).toBe(true);

    const patch = await send('PATCH', '/policy', { schema_coalescing_mode: 'project' });
    expect(patch.status).toBe(200);
    const projectTable = `edge_mirror_p${PROJECT.replaceAll('-', '').slice(0, 8)}_device_state`;
    await waitFor(
      async () => {
        const m = await get<{ items: { table_name: string; rows: number; lineages: number }[] }>(
          '/coalesced-mirrors',
        );
        return m.items[0]?.rows === 6 && m.items[0].lineages === 2 ? m : undefined;
      },
      { message: 'both devices consolidated' },
    );
    for (const l of before) {
      const rows = await get<{ table: string; total: number; items: { row: { mode: string } }[] }>(
        `/lineages/${l.lineage_id}/mirror-rows`,
      );
      expect(rows.table).toBe(projectTable);
      expect(rows.items.map((i) => i.row.mode)).toEqual([1, 2, 3].map((q) => `${l.device_name}-${q}`));
      const detail = await get<{
        materialization: { table_name: string; coalesced: boolean; tables: unknown[] };
      }>(`/lineages/${l.lineage_id}`);
      expect(detail.materialization).toMatchObject({ table_name: projectTable, coalesced: true, tables: [] });
    }
    const entries = await cliJsonOk<{ items: { status: string; adopted_from: string | null }[] }>(cli, [
      'registry',
      'ls',
    ]);
    expect(entries.items).toHaveLength(1);
    expect(entries.items[0]!.status).toBe('approved');
    expect(before.map((l) => l.lineage_id)).toContain(entries.items[0]!.adopted_from);

    // Later changes of a consolidated device land in the coalesced table.
    await sendBatch(nats.mqttUrl, a, [4], DEVICE_STATE, epochA);
    await waitFor(
      async () =>
        (await get<{ items: { rows: number }[] }>('/coalesced-mirrors')).items[0]?.rows === 7
          ? true
          : undefined,
      { message: 'a later row of a consolidated device' },
    );

    // A delete on a consolidated device removes its own row only: the key includes device_id.
    await sendBatch(nats.mqttUrl, a, [5], DEVICE_STATE, epochA, 'delete', [1]);
    await waitFor(
      async () =>
        (await get<{ items: { rows: number }[] }>('/coalesced-mirrors')).items[0]?.rows === 6
          ? true
          : undefined,
      { message: 'a delete in the coalesced table' },
    );
    const al = before.find((l) => l.device_name === a)!;
    const bl0 = before.find((l) => l.device_name === b)!;
    const ids = async (l: Lineage) =>
      (await get<{ items: { key: { id: number } }[] }>(`/lineages/${l.lineage_id}/mirror-rows`)).items.map(
        (i) => i.key.id,
      );
    expect(await ids(al)).toEqual([2, 3, 4]);
    expect(await ids(bl0)).toEqual([1, 2, 3]);

    // A device with another key type: a registry review, rejected over the CLI; it stays paused.
    const c = `${t}-c`;
    await sendBatch(nats.mqttUrl, c, [1], other);
    const queued: { review_id: string; status: string } = await waitFor(
      async () => {
        const r = await get<{ items: { review_id: string; status: string }[] }>(
          '/registry-reviews?status=queued',
        );
        return r.items[0];
      },
      { message: 'registry review of the other schema' },
    );
    // A repeated request with the same Idempotency-Key has no second effect.
    const claimOnce = async () =>
      fetch(`${base}/registry-reviews/${queued.review_id}/claim`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${TOKEN}`,
          'content-type': 'application/json',
          'idempotency-key': 'k1',
        },
        body: JSON.stringify({ action_version: 1 }),
      }).then(async (r) => ({ status: r.status, body: (await r.json()) as { events: unknown[] } }));
    const c1 = await claimOnce();
    const c2 = await claimOnce();
    expect(c1.status).toBe(200);
    expect(c2).toEqual(c1);
    const show = await waitFor(
      async () => {
        const r = await cli(['registry', 'show', queued.review_id]);
        return r.code === 0 && r.stdout.includes('in_review') ? r : undefined;
      },
      { message: 'the claim in the read store' },
    );
    expect(show.stdout).toContain('next: sluice registry approve');
    const rejected = await cli(['registry', 'reject', queued.review_id, '--reason', 'wrong key type']);
    expect(rejected.code).toBe(0);
    expect(rejected.stdout).toContain('stay paused');
    const again = await cli(['registry', 'approve', queued.review_id]);
    expect(again.code).toBe(EXIT.conflict);
    await waitFor(
      async () => {
        const r = await get<{ items: { status: string }[] }>('/registry');
        return r.items.some((e) => e.status === 'rejected') ? true : undefined;
      },
      { message: 'entry rejected' },
    );
    const cl = (await lineages()).find((l) => l.device_name === c)!;
    expect(cl).toMatchObject({ status: 'paused', staged_rows: 1, registry_state: 'awaiting' });

    // NATS: an operator puts device b in a fleet; the fleet filter finds its lineage.
    const bl = before.find((l) => l.device_name === b)!;
    const reply = await cloud!.nc.request(
      'edge.cmd.device.assign-fleet',
      JSON.stringify({ project_id: PROJECT, device: b, fleet_id: FLEET }),
      { timeout: 10_000 },
    );
    expect(reply.json()).toMatchObject({ ok: true, device_id: bl.device_id, fleet_id: FLEET, lineages: 1 });
    const inFleet = await waitFor(
      async () => {
        const r = await get<{ items: Lineage[] }>(`/lineages?fleet_id=${FLEET}`);
        return r.items.length === 1 ? r.items : undefined;
      },
      { message: 'fleet filter' },
    );
    expect(inFleet[0]!.lineage_id).toBe(bl.lineage_id);
    const fleetReviews = await get<{ items: { lineage_id: string }[] }>(`/schema-reviews?fleet_id=${FLEET}`);
    expect(fleetReviews.items.map((r) => r.lineage_id)).toEqual([bl.lineage_id]);
    const devices = await cliJsonOk<{ items: { device_name: string; fleet_id: string | null }[] }>(cli, [
      'devices',
      'ls',
      '--fleet',
      FLEET,
    ]);
    expect(devices.items).toEqual([expect.objectContaining({ device_name: b, fleet_id: FLEET })]);
    const bad = await cloud!.nc.request(
      'edge.cmd.registry.claim',
      JSON.stringify({ registry_id: 'x'.repeat(64), review_id: uuidv7(), action_version: 1 }),
      { timeout: 10_000 },
    );
    expect(bad.json()).toMatchObject({ ok: false, error: { code: 'invalid_command' } });
    // A hostile table name, and a column named like a system column, in the coalesced table.
    const h = `${t}-h`;
    await sendBatch(nats.mqttUrl, h, [1, 2], hostile);
    const hr = await waitFor(
      async () => {
        const r = await get<{ items: { review_id: string; source_table: string }[] }>(
          '/registry-reviews?status=queued',
        );
        return r.items.find((x) => x.source_table === hostile.table_name);
      },
      { message: 'registry review of the hostile table' },
    );
    expect((await cli(['registry', 'approve', hr.review_id, '--claim'])).code).toBe(0);
    const hl = await waitFor(
      async () => (await lineages()).find((l) => l.device_name === h && l.materialized_rows === 2),
      { message: 'hostile table materialized' },
    );
    const hrows = await get<{ table: string; items: { row: Record<string, unknown> }[] }>(
      `/lineages/${hl.lineage_id}/mirror-rows`,
    );
    expect(hrows.table).toMatch(/^edge_mirror_p[0-9a-f]{8}_x___drop_table_[a-z_]+_[0-9a-f]{8}$/);
    expect(hrows.table.length).toBeLessThanOrEqual(63);
    expect(hrows.items.map((i) => i.row)).toEqual(
      [1, 2].map((q) => ({ id: q, device_id: null, mode: `${h}-${q}` })),
    );
    expect((await lineages()).length).toBeGreaterThanOrEqual(4);

    const openapi = (await (await fetch(`${api}/openapi.json`)).json()) as { paths: Record<string, unknown> };
    const prefix = '/core/api/v1/projects/{project_id}/edge';
    for (const path of [
      '/registry',
      '/registry-reviews',
      '/registry-reviews/{review_id}',
      '/registry-reviews/{review_id}/abandon',
      '/coalesced-mirrors',
      '/devices/{device}/fleet',
    ]) {
      expect(Object.keys(openapi.paths)).toContain(`${prefix}${path}`);
    }
  }, 90_000);
});

async function cliJsonOk<T>(
  cli: (args: string[]) => Promise<{ code: number; stdout: string; stderr: string }>,
  args: string[],
): Promise<T> {
  const r = await cli([...args, '--json']);
  if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}
