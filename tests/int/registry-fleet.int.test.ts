/**
 * Registry coalescing with a fleet of simulated devices (SPEC §4.6), through the real bridge,
 * two workers, the projector and the API against a private nats-server, on both read stores.
 * The devices are MQTT clients speaking the wire protocol, one connection each.
 */
import { connect } from '@nats-io/transport-node';
import mqtt from 'mqtt';
import { uuidv7 } from 'uuidv7';
import { schemaHash, type SchemaColumns } from '../../domain/protocol/fingerprint';
import { readEnv } from '../../infra/config/env';
import { RegistryEventStore } from '../../infra/nats/registry-events';
import { JetStreamEventStore } from '../../infra/nats/event-store';
import { ensureStreams } from '../../infra/nats/streams';
import { jetstreamManager } from '@nats-io/jetstream';
import { type Running, startRoles } from '../../cli/roles';
import { DEVICE_STATE } from '../support/fixtures';
import { DIALECTS } from '../../projections/test-support/stores';
import { RegistryCommandHandler } from '../../worker/registry-handler';
import { registryId } from '../../domain/registry/events';
import { createTestDatabase, type TestDatabase } from '../support/postgres';
import { tempDir } from '../support/proc';
import { startNats, type NatsServer } from '../support/nats';
import { waitFor } from '../support/wait';

const RACE_PROJECT = '0190a000-0000-7000-8000-0000000000f0';
// Each dialect gets its own project and fleet: the runs share the nats-server, so they would
// otherwise share registry entries too.
const PROJECTS = {
  sqlite: '0190a000-0000-7000-8000-0000000000f1',
  postgres: '0190a000-0000-7000-8000-0000000000f2',
};
const FLEETS = {
  sqlite: '0190a0f1-0000-7000-8000-0000000000f1',
  postgres: '0190a0f2-0000-7000-8000-0000000000f2',
};
const TOKEN = 'registry-fleet-token-0123456789';
const SLUG = 'fleet-a';
const FLEET_SIZE = 50;

const wider: SchemaColumns = {
  table_name: 'device_state',
  columns: [
    ...DEVICE_STATE.columns,
    { name: 'setpoint', decl_type_affinity: 'REAL', pk_ordinal: 0, not_null: false },
  ],
};

function batch(s: SchemaColumns, seqs: number[], device: string) {
  return {
    format_version: 1,
    capture_strategy: 'sqlite_row_batch_v1',
    batch_id: uuidv7(),
    journal_epoch: uuidv7(),
    source_table: 'device_state',
    schema_hash: schemaHash(s),
    schema_columns: s,
    first_commit_seq: Math.min(...seqs),
    last_commit_seq: Math.max(...seqs),
    rows: seqs.map((q) => ({
      commit_seq: q,
      op: 'insert',
      pk: { id: q },
      row: { id: q, mode: `${device}-m${q}`, ...(s === wider ? { setpoint: 21.5 } : {}) },
    })),
  };
}

/** One device: its own MQTT connection, one batch of three rows, then gone. */
async function sendBatch(mqttUrl: string, device: string, s: SchemaColumns = DEVICE_STATE): Promise<void> {
  const c = await mqtt.connectAsync(mqttUrl, { clientId: `dev-${device}`, clean: true, protocolVersion: 4 });
  try {
    await c.publishAsync(`${SLUG}/${device}/sync/rows/batch`, JSON.stringify(batch(s, [1, 2, 3], device)), {
      qos: 1,
    });
  } finally {
    await c.endAsync();
  }
}

type Lineage = {
  lineage_id: string;
  device_name: string;
  status: string;
  pause_reasons: string[];
  materialized_rows: number;
  staged_rows: number;
  fleet_id: string | null;
  registry_id: string | null;
  registry_state: string | null;
};
type ReviewItem = { review_id: string; registry_id: string; status: string; action_version: number };
type Coalesced = { table_name: string; lineages: number; rows: number; scope: string; scope_id: string };

let nats: NatsServer;
beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  await nats?.stop();
});

describe('registry review races', () => {
  it('two workers enrolling the first lineages of a new hash at once open exactly one review', async () => {
    const nc = await connect({ servers: nats.url });
    await ensureStreams(await jetstreamManager(nc));
    const key = {
      project_id: RACE_PROJECT,
      scope: 'project' as const,
      scope_id: RACE_PROJECT,
      source_table: `race-${uuidv7()}`,
      schema_hash: schemaHash(DEVICE_STATE),
    };
    const id = registryId(key);
    // Two handlers with their own caches, as two worker processes have.
    const a = new RegistryCommandHandler(await RegistryEventStore.create(nc));
    const b = new RegistryCommandHandler(await RegistryEventStore.create(nc));
    await Promise.all([a.view(key), b.view(key)]);
    const enroll = (h: RegistryCommandHandler, n: number) =>
      h.execute(
        id,
        {
          type: 'EnrollLineage',
          data: {
            ...key,
            lineage_id: uuidv7(),
            device_id: `d${n}`,
            schema_columns: DEVICE_STATE,
            new_review_id: uuidv7(),
          },
        },
        { decision_id: uuidv7() },
      );
    await Promise.all(Array.from({ length: 10 }, (_, n) => enroll(n % 2 ? a : b, n)));
    const { events } = await (await RegistryEventStore.create(nc)).load(id);
    expect(events.filter((e) => e.type === 'RegistryReviewOpened')).toHaveLength(1);
    expect(events.filter((e) => e.type === 'RegistryLineageEnrolled')).toHaveLength(10);
    expect(events.filter((e) => e.type === 'RegistryEntryRegistered')).toHaveLength(1);
    await nc.close();
  });
});

describe.each(DIALECTS)('a fleet of devices coalesced on the %s read store', (dialect) => {
  const PROJECT = PROJECTS[dialect];
  const FLEET = FLEETS[dialect];
  let cloud: Running | undefined;
  let worker2: Running | undefined;
  let pg: TestDatabase | undefined;
  let base = '';

  const get = async <T>(path: string): Promise<T> => {
    const r = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    if (!r.ok) throw new Error(`GET ${path}: ${r.status} ${await r.text()}`);
    return (await r.json()) as T;
  };
  const send = async <T>(
    method: string,
    path: string,
    body: unknown,
  ): Promise<{ status: number; body: T }> => {
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
  const lineages = async () =>
    (await get<{ items: Lineage[]; total: number }>(`/lineages?limit=500&fleet_id=${FLEET}`)).items;

  beforeAll(async () => {
    pg = dialect === 'postgres' ? await createTestDatabase('fleet') : undefined;
    // Each dialect gets its own project, so the two runs share the nats-server but nothing else.
    const env = readEnv({
      SLUICE_NATS_URL: nats.url,
      SLUICE_MQTT_URL: nats.mqttUrl,
      SLUICE_READ_STORE: pg ? pg.url : `sqlite:${tempDir('fleet')}/read.db`,
      SLUICE_API_PORT: '0',
      SLUICE_PROJECT_ID: PROJECT,
      SLUICE_TOPIC_FLEETS: JSON.stringify({ [SLUG]: FLEET }),
      SLUICE_BRIDGE_CLIENT_ID: `bridge-fleet-${dialect}`,
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
    worker2 = await startRoles(env, ['worker']);
    base = `${cloud.api!.url}/core/api/v1/projects/${PROJECT}/edge`;
    const patch = await send<{ schema_coalescing_mode: string }>('PATCH', '/policy', {
      schema_coalescing_mode: 'fleet',
    });
    expect(patch.status).toBe(200);
    expect(patch.body.schema_coalescing_mode).toBe('fleet');
  }, 60_000);

  afterAll(async () => {
    await worker2?.stop();
    await cloud?.stop();
    await pg?.drop();
  });

  it('one registry review for 50 devices, one approval, one coalesced table; a late device joins with no review; another hash gets its own review', async () => {
    const tag = dialect === 'sqlite' ? 's' : 'p';
    const devices = Array.from({ length: FLEET_SIZE }, (_, i) => `${tag}gw-${String(i).padStart(2, '0')}`);
    await Promise.all(devices.map((d) => sendBatch(nats.mqttUrl, d)));

    // Every lineage waits for the fleet's registry entry, staging its rows; no review of its own.
    const waiting = await waitFor(
      async () => {
        const ls = (await lineages()).filter((l) => l.device_name.startsWith(`${tag}gw-`));
        return ls.length === FLEET_SIZE &&
          ls.every((l) => l.staged_rows === 3 && l.registry_state === 'awaiting')
          ? ls
          : undefined;
      },
      { timeoutMs: 30_000, message: `${FLEET_SIZE} lineages awaiting the registry` },
    );
    for (const l of waiting) {
      expect(l.status).toBe('paused');
      expect(l.pause_reasons).toEqual(['schema_review']);
      expect(l.fleet_id).toBe(FLEET);
    }
    expect(new Set(waiting.map((l) => l.registry_id)).size).toBe(1);
    const own = await get<{ total: number }>('/schema-reviews');
    expect(own.total).toBe(0);

    const queued = await waitFor(
      async () => {
        const r = await get<{ items: ReviewItem[]; total: number }>(`/registry-reviews?fleet_id=${FLEET}`);
        const entry = await get<{ items: { enrolled_lineages: number }[] }>(`/registry?fleet_id=${FLEET}`);
        return entry.items[0]?.enrolled_lineages === FLEET_SIZE ? r : undefined;
      },
      { timeoutMs: 20_000, message: 'every lineage enrolled in the registry entry' },
    );
    expect(queued.total).toBe(1);
    const review = queued.items[0]!;
    expect(review.status).toBe('queued');
    expect(review.registry_id).toBe(waiting[0]!.registry_id);

    const claim = await send<{ review: ReviewItem }>('POST', `/registry-reviews/${review.review_id}/claim`, {
      action_version: 1,
    });
    expect(claim.status).toBe(200);
    expect(claim.body.review).toMatchObject({ status: 'in_review', action_version: 2 });
    const stale = await send<{ code: string }>('POST', `/registry-reviews/${review.review_id}/approve`, {
      action_version: 1,
    });
    expect(stale.status).toBe(409);
    expect(stale.body.code).toBe('stale_action_version');
    const approve = await send<{ review: ReviewItem }>(
      'POST',
      `/registry-reviews/${review.review_id}/approve`,
      {
        action_version: 2,
      },
    );
    expect(approve.status).toBe(200);
    expect(approve.body.review.status).toBe('approved');

    // The approval reaches every lineage: active, staged rows replayed into one coalesced table.
    const active = await waitFor(
      async () => {
        const ls = (await lineages()).filter((l) => l.device_name.startsWith(`${tag}gw-`));
        return ls.every(
          (l) => l.status === 'active' && l.materialized_rows === 3 && l.registry_state === 'coalesced',
        )
          ? ls
          : undefined;
      },
      { timeoutMs: 30_000, message: 'every lineage active and materialized' },
    );
    expect(active).toHaveLength(FLEET_SIZE);
    const mirrors = await waitFor(
      async () => {
        const m = await get<{ items: Coalesced[] }>(`/coalesced-mirrors?fleet_id=${FLEET}`);
        return m.items[0]?.rows === FLEET_SIZE * 3 ? m : undefined;
      },
      { message: 'coalesced table filled' },
    );
    expect(mirrors.items).toHaveLength(1);
    const table = mirrors.items[0]!;
    expect(table.table_name).toBe(`edge_mirror_f${FLEET.replaceAll('-', '').slice(0, 8)}_device_state`);
    expect(table).toMatchObject({ lineages: FLEET_SIZE, scope: 'fleet', scope_id: FLEET });
    // A lineage's mirror rows are its own device's, read from the shared table.
    const one = await get<{
      table: string;
      items: { row: { mode: string }; device_id: string }[];
      total: number;
    }>(`/lineages/${active[7]!.lineage_id}/mirror-rows?count=true`);
    expect(one.table).toBe(table.table_name);
    expect(one.total).toBe(3);
    expect(one.items.map((i) => i.row.mode)).toEqual([1, 2, 3].map((q) => `${active[7]!.device_name}-m${q}`));

    // The approval on each lineage names the registry review as its cause.
    const events = await JetStreamEventStore.create(cloud!.nc).then((s) => s.load(active[0]!.lineage_id));
    const taken = events.events.find((e) => e.type === 'SchemaApprovedByRegistry');
    expect(taken?.data).toMatchObject({ review_id: review.review_id, scope: 'fleet', scope_id: FLEET });
    expect(taken?.metadata.actor).toBe('ops');

    // A 51st device: approved on its first batch, no review, straight into the same table.
    const late = `${tag}gw-late`;
    await sendBatch(nats.mqttUrl, late);
    const joined = await waitFor(
      async () => (await lineages()).find((l) => l.device_name === late && l.materialized_rows === 3),
      { message: 'the late device materialized' },
    );
    expect(joined).toMatchObject({
      status: 'active',
      pause_reasons: [],
      staged_rows: 0,
      registry_state: 'coalesced',
    });
    const lateEvents = (await (await JetStreamEventStore.create(cloud!.nc)).load(joined.lineage_id)).events;
    expect(lateEvents.map((e) => e.type)).toEqual([
      'LineageRegistered',
      'LineageFleetAssigned',
      'SchemaVersionObserved',
      'SchemaApprovedByRegistry',
      'RowsAccepted',
    ]);
    await waitFor(
      async () =>
        (await get<{ items: Coalesced[] }>(`/coalesced-mirrors`)).items[0]?.rows === (FLEET_SIZE + 1) * 3,
      { message: 'late rows in the coalesced table' },
    );
    expect((await get<{ total: number }>('/registry-reviews')).total).toBe(1);

    // Another schema hash of the same table: a registry review of its own.
    const odd = `${tag}gw-odd`;
    await sendBatch(nats.mqttUrl, odd, wider);
    const second = await waitFor(
      async () => {
        const r = await get<{ items: ReviewItem[] }>('/registry-reviews?status=queued');
        return r.items.length === 1 ? r.items[0] : undefined;
      },
      { message: 'a registry review for the other hash' },
    );
    expect(second.registry_id).not.toBe(review.registry_id);
    const oddLineage = (await lineages()).find((l) => l.device_name === odd)!;
    expect(oddLineage).toMatchObject({ status: 'paused', staged_rows: 3, registry_id: second.registry_id });
    const entries = await get<{
      items: { status: string; enrolled_lineages: number; coalesced_lineages: number }[];
    }>('/registry');
    expect(entries.items.map((e) => [e.status, e.enrolled_lineages, e.coalesced_lineages])).toEqual([
      ['approved', FLEET_SIZE, FLEET_SIZE + 1],
      ['pending', 1, 0],
    ]);

    // Both read sides are projections: rebuilt from the events, they come back the same.
    const dump = async () => ({
      mirrors: await get<unknown>('/coalesced-mirrors'),
      registry: await get<unknown>('/registry'),
      reviews: await get<unknown>('/registry-reviews'),
      rows: await get<unknown>(`/lineages/${active[7]!.lineage_id}/mirror-rows`),
    });
    const before = await dump();
    await cloud!.projector!.rebuild('mirror');
    await cloud!.projector!.rebuild('registry');
    expect(await dump()).toEqual(before);
  }, 120_000);
});
