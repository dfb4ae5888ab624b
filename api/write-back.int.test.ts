import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import type { FastifyInstance } from 'fastify';
import { uuidv7 } from 'uuidv7';
import { DEFAULT_POLICY } from '../domain/policy/policy';
import type { RowChange } from '../domain/protocol/contracts';
import { schemaHash } from '../domain/protocol/fingerprint';
import { JetStreamEventStore } from '../infra/nats/event-store';
import { ensureStreams } from '../infra/nats/streams';
import { silentLogger } from '../infra/log';
import { createMetrics } from '../infra/metrics';
import { type Projector, startProjector } from '../projections';
import { DEVICE_STATE } from '../tests/support/fixtures';
import { DIALECTS, openTestStore, type TestStore } from '../projections/test-support/stores';
import { CommandService, serveCommands } from '../worker/commands';
import { LineageCommandHandler } from '../worker/handler';
import { startNats, type NatsServer } from '../tests/support/nats';
import { MANAGE, READ, TokenBook } from './auth/tokens';
import { buildApp } from './app';
import { ingestRows } from './testing';

const A = '0190a000-0000-7000-8000-0000000000a1';
const B = '0190a000-0000-7000-8000-0000000000b1';
const MANAGER = 'manager-token-writeback-aaa';
const READER = 'reader-token-writeback-aaaa';
const OTHER = 'other-project-token-writebak';

describe.each(DIALECTS)('cloud write-back through the API on %s', (dialect) => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let events: JetStreamEventStore;
  let ts: TestStore;
  let app: FastifyInstance;
  let projector: Projector;
  let handler: LineageCommandHandler;
  let service: CommandService;
  /** The versions of the suite's two writes (the write's time in ms). */
  let v1 = 0;
  let v2 = 0;
  const lineageId = uuidv7();
  const otherLineage = uuidv7();
  const deviceId = uuidv7();
  const deviceName = `wb-${dialect}`;
  const epoch = uuidv7();
  const base = `/core/api/v1/projects/${A}`;
  const rowsUrl = (device = deviceName, lineage = lineageId) =>
    `${base}/devices/${encodeURIComponent(device)}/edge/state-tables/${lineage}/rows`;
  const auth = (token = MANAGER) => ({ authorization: `Bearer ${token}` });
  const get = (url: string, token = MANAGER) => app.inject({ method: 'GET', url, headers: auth(token) });
  const post = (url: string, payload: unknown, key: string, token = MANAGER) =>
    app.inject({
      method: 'POST',
      url,
      headers: { ...auth(token), 'idempotency-key': key },
      payload: payload as object,
    });
  const commitCount = async () => (await events.readCommits(lineageId)).length;
  const eventTypes = async (from: number) =>
    (await events.readCommits(lineageId)).slice(from).flatMap((c) => c.events.map((e) => e.type));

  /** A device batch of `device_state` rows in the suite's epoch, decided by the real handler. */
  const ingest = (rows: RowChange[]) =>
    handler.execute(
      lineageId,
      {
        type: 'IngestRowBatch',
        data: {
          project_id: A,
          device_id: deviceId,
          device_name: deviceName,
          new_lineage_id: lineageId,
          new_review_id: uuidv7(),
          new_control_id: uuidv7(),
          new_replay_id: uuidv7(),
          new_write_control_id: uuidv7(),
          now: new Date().toISOString(),
          policy: DEFAULT_POLICY,
          batch: {
            format_version: 1,
            capture_strategy: 'sqlite_row_batch_v1',
            batch_id: uuidv7(),
            journal_epoch: epoch,
            source_table: 'device_state',
            schema_hash: schemaHash(DEVICE_STATE),
            first_commit_seq: Math.min(...rows.map((r) => r.commit_seq)),
            last_commit_seq: Math.max(...rows.map((r) => r.commit_seq)),
            rows,
          },
        },
      },
      { decision_id: uuidv7() },
    );

  beforeAll(async () => {
    nats = await startNats();
    nc = await connect({ servers: nats.url });
    await ensureStreams(await jetstreamManager(nc));
    events = await JetStreamEventStore.create(nc);
    ts = await openTestStore(dialect);
    handler = new LineageCommandHandler(events);
    service = new CommandService(handler);
    serveCommands(nc, service, silentLogger());
    projector = await startProjector({ nc, store: ts.store, log: silentLogger() });
    app = await buildApp({
      store: ts.store,
      commands: service,
      events,
      metrics: createMetrics(),
      tokens: new TokenBook([
        { token: MANAGER, project_id: A, permissions: [READ, MANAGE], name: 'ops' },
        { token: READER, project_id: A, permissions: [READ] },
        { token: OTHER, project_id: B, permissions: [READ, MANAGE] },
      ]),
    });
    await ingestRows(handler, {
      project_id: A,
      lineage_id: lineageId,
      device_id: deviceId,
      device_name: deviceName,
      seqs: [1, 2],
      journal_epoch: epoch,
    });
    await ingestRows(handler, { project_id: B, lineage_id: otherLineage, device_name: 'wb-b', seqs: [1] });
    await projector.waitForCaughtUp();
    const review = (await get(`${base}/edge/schema-reviews?lineage_id=${lineageId}`)).json().items[0] as {
      review_id: string;
    };
    expect(
      (await post(`${base}/edge/schema-reviews/${review.review_id}/claim`, { action_version: 1 }, 'c'))
        .statusCode,
    ).toBe(200);
    expect(
      (await post(`${base}/edge/schema-reviews/${review.review_id}/approve`, { action_version: 2 }, 'a'))
        .statusCode,
    ).toBe(200);
  });
  afterAll(async () => {
    await app?.close();
    await projector?.stop();
    await ts?.cleanup();
    await nc?.close();
    await nats?.stop();
  });

  it('refuses a write to a device_authoritative lineage, and appends nothing', async () => {
    const before = await commitCount();
    const r = await post(rowsUrl(), { rows: [{ pk: { id: 1 }, values: { mode: 'cool' } }] }, 'w-devauth');
    expect(r.statusCode).toBe(409);
    expect(r.json()).toMatchObject({ code: 'not_cloud_authoritative' });
    expect(r.json().message).toContain('POST /lineages/{id}/authority');
    expect(await commitCount()).toBe(before);
  });

  it('makes the lineage cloud_authoritative: managers only, once', async () => {
    const before = await commitCount();
    const ro = await post(
      `${base}/edge/lineages/${lineageId}/authority`,
      { mode: 'cloud_authoritative' },
      'au-ro',
      READER,
    );
    expect(ro.statusCode).toBe(403);
    const bad = await post(`${base}/edge/lineages/${lineageId}/authority`, { mode: 'cloud' }, 'au-bad');
    expect(bad.statusCode).toBe(400);
    expect(bad.json().code).toBe('invalid_request');
    const crossed = await post(
      `/core/api/v1/projects/${B}/edge/lineages/${lineageId}/authority`,
      { mode: 'cloud_authoritative' },
      'au-x',
      OTHER,
    );
    expect(crossed.statusCode).toBe(404);
    expect(await commitCount()).toBe(before);

    const detail = async () => (await get(`${base}/edge/lineages/${lineageId}`)).json().write_back;
    expect(await detail()).toEqual({ authority: 'device_authoritative', last_cloud_version: 0 });
    const set = await post(
      `${base}/edge/lineages/${lineageId}/authority`,
      { mode: 'cloud_authoritative' },
      'au-1',
    );
    expect(set.statusCode).toBe(200);
    expect(set.json()).toMatchObject({
      authority: 'cloud_authoritative',
      events: [{ type: 'LineageAuthoritySet' }],
    });
    const again = await post(
      `${base}/edge/lineages/${lineageId}/authority`,
      { mode: 'cloud_authoritative' },
      'au-2',
    );
    expect(again.json()).toMatchObject({ events: [] });
    expect(await eventTypes(before)).toEqual(['LineageAuthoritySet']);
    await projector.waitForCaughtUp();
    expect(await detail()).toEqual({ authority: 'cloud_authoritative', last_cloud_version: 0 });
  });

  it.each([
    ['no rows', 400, 'invalid_request', { rows: [] }],
    [
      '501 rows',
      400,
      'invalid_request',
      { rows: Array.from({ length: 501 }, (_, i) => ({ pk: { id: i + 1 }, values: {} })) },
    ],
    ['no rows field', 400, 'invalid_request', {}],
    ['an unknown column', 422, 'invalid_rows', { rows: [{ pk: { id: 1 }, values: { colour: 'red' } }] }],
    [
      'a pk without its key column',
      422,
      'invalid_rows',
      { rows: [{ pk: { mode: 'x' }, values: { mode: 'y' } }] },
    ],
    [
      'a text key for an INTEGER key column',
      422,
      'invalid_rows',
      { rows: [{ pk: { id: '1' }, values: {} }] },
    ],
    [
      'an unknown row field',
      400,
      'invalid_request',
      { rows: [{ pk: { id: 1 }, values: {}, cloud_version: 99 }] },
    ],
    [
      'a malformed $int',
      400,
      'invalid_request',
      { rows: [{ pk: { id: 1 }, values: { mode: { $int: 'x' } } }] },
    ],
  ])('refuses a write with %s (%i %s) and appends nothing', async (what, status, code, body) => {
    const before = await commitCount();
    const r = await post(rowsUrl(), body, `bad-${what}`);
    expect(r.statusCode).toBe(status);
    expect(r.json().code).toBe(code);
    expect(await commitCount()).toBe(before);
  });

  it('answers 404 for a device that does not own the lineage, or another project', async () => {
    const before = await commitCount();
    const body = { rows: [{ pk: { id: 1 }, values: { mode: 'cool' } }] };
    const wrong = await post(rowsUrl('someone-else'), body, 'd-1');
    expect(wrong.statusCode).toBe(404);
    expect(wrong.json().code).toBe('not_found');
    expect((await post(rowsUrl(deviceName, otherLineage), body, 'd-2')).statusCode).toBe(404);
    const crossed = await post(
      `/core/api/v1/projects/${B}/devices/${deviceName}/edge/state-tables/${lineageId}/rows`,
      body,
      'd-3',
      OTHER,
    );
    expect(crossed.statusCode).toBe(404);
    expect((await post(rowsUrl(), body, 'd-ro', READER)).statusCode).toBe(403);
    expect(await commitCount()).toBe(before);
  });

  it('writes rows: a versioned cloud row, a state_write control, replayed for the same key', async () => {
    const before = await commitCount();
    const body = {
      rows: [
        { pk: { id: 1 }, values: { mode: 'cool' } },
        { pk: { id: 7 }, values: { mode: 'new' } },
      ],
    };
    const first = await post(rowsUrl(), body, 'write-1');
    expect(first.statusCode).toBe(200);
    v1 = first.json().cloud_version as number;
    expect(v1).toBeGreaterThanOrEqual(Date.parse('2026-01-01T00:00:00Z')); // the write's time in ms
    expect(first.json()).toMatchObject({
      lineage_id: lineageId,
      rows: [
        { pk: { id: 1 }, cloud_version: v1 },
        { pk: { id: 7 }, cloud_version: v1 },
      ],
      events: [{ type: 'CloudRowsWritten' }, { type: 'ControlIssued' }],
    });
    const again = await post(rowsUrl(), body, 'write-1');
    expect(again.json()).toEqual(first.json());
    const reused = await post(rowsUrl(), { rows: [{ pk: { id: 1 }, values: {} }] }, 'write-1');
    expect(reused.statusCode).toBe(422);
    expect(reused.json().code).toBe('idempotency_key_reused');
    // The device id works as well as its name.
    const byId = await post(
      rowsUrl(deviceId),
      { rows: [{ pk: { id: 1 }, values: { mode: 'colder' } }] },
      'write-2',
    );
    v2 = byId.json().cloud_version as number;
    expect(v2).toBeGreaterThan(v1);
    expect(await eventTypes(before)).toEqual([
      'CloudRowsWritten',
      'ControlIssued',
      'CloudRowsWritten',
      'ControlIssued',
    ]);

    await projector.waitForCaughtUp();
    const controls = (await get(`${base}/edge/pending-controls?lineage_id=${lineageId}`)).json().items as {
      control_id: string;
      control_kind: string;
    }[];
    expect(controls.map((c) => c.control_kind)).toEqual(['state_write', 'state_write']);
    expect(controls.map((c) => c.control_id).sort()).toEqual(
      [first.json().control_id, byId.json().control_id].sort(),
    );
    const cloudRows = (await get(rowsUrl(), READER)).json();
    expect(cloudRows).toMatchObject({
      authority: 'cloud_authoritative',
      last_cloud_version: v2,
      total: 2,
      items: [
        {
          pk: { id: 1 },
          values: { mode: 'colder' },
          cloud_version: v2,
          status: 'pending',
          control_id: byId.json().control_id,
        },
        {
          pk: { id: 7 },
          values: { mode: 'new' },
          cloud_version: v1,
          status: 'pending',
          device_version: null,
        },
      ],
    });
  });

  it('a device change made before the device saw the write loses, visibly; its confirmation lands in the mirror', async () => {
    const before = await commitCount();
    await ingest([
      { commit_seq: 3, op: 'update', pk: { id: 1 }, row: { id: 1, mode: 'device-stale' }, lkcv: 0 },
    ]);
    await projector.waitForCaughtUp();
    const mirrorRows = async () =>
      (
        (await get(`${base}/edge/lineages/${lineageId}/mirror-rows`)).json().items as {
          row: Record<string, unknown>;
          source_commit_seq: number;
        }[]
      ).map((m) => [m.row, m.source_commit_seq]);
    // The stale device value is not materialized over the cloud's row: the mirror keeps seq 1.
    expect(await mirrorRows()).toEqual([
      [{ id: 1, mode: 'm1' }, 1],
      [{ id: 2, mode: 'm2' }, 2],
    ]);
    await ingest([
      { commit_seq: 4, op: 'update', pk: { id: 1 }, row: { id: 1, mode: 'colder' }, lkcv: v2 },
      { commit_seq: 5, op: 'insert', pk: { id: 7 }, row: { id: 7, mode: 'new' }, lkcv: v1 },
    ]);
    expect(await eventTypes(before)).toEqual(['StateWriteConflictDetected', 'RowsAccepted']);
    await projector.waitForCaughtUp();

    const audit = (await get(`${base}/edge/lineages/${lineageId}/events?limit=500`)).json().items as {
      type: string;
      data: Record<string, unknown>;
    }[];
    const conflict = audit.find((e) => e.type === 'StateWriteConflictDetected');
    expect(conflict?.data).toMatchObject({
      conflicts: [{ pk: { id: 1 }, commit_seq: 3, lkcv: 0, cloud_version: v2 }],
      reissued: 0, // the state_write carrying version 2 is still unacknowledged
    });
    const cloudRows = (await get(rowsUrl())).json().items as Record<string, unknown>[];
    expect(cloudRows).toMatchObject([
      { pk: { id: 1 }, status: 'applied', device_version: v2, conflicts: 1 },
      { pk: { id: 7 }, status: 'applied', device_version: v1, conflicts: 0 },
    ]);
    expect(await mirrorRows()).toEqual([
      [{ id: 1, mode: 'colder' }, 4],
      [{ id: 2, mode: 'm2' }, 2],
      [{ id: 7, mode: 'new' }, 5],
    ]);
  });

  it('the cloud rows are a projection: a rebuild reproduces them', async () => {
    await projector.waitForCaughtUp();
    const before = (await get(rowsUrl())).json();
    await projector.rebuild('cloud_rows');
    expect((await get(rowsUrl())).json()).toEqual(before);
    expect(before.items).toHaveLength(2);
  });

  it('documents the write-back routes in OpenAPI', async () => {
    const paths = Object.keys((await app.inject({ method: 'GET', url: '/openapi.json' })).json().paths);
    expect(paths).toEqual(
      expect.arrayContaining([
        '/core/api/v1/projects/{project_id}/devices/{device}/edge/state-tables/{lineage_id}/rows',
        '/core/api/v1/projects/{project_id}/edge/lineages/{lineage_id}/authority',
      ]),
    );
  });

  it('takes the same commands over NATS (edge.cmd.lineage.write-rows)', async () => {
    const req = async (verb: string, body: unknown) =>
      (await nc.request(`edge.cmd.${verb}`, JSON.stringify(body), { timeout: 10_000 })).json<{
        ok: boolean;
        events?: { type: string }[];
        error?: { code: string };
      }>();
    const before = await commitCount();
    expect(await req('lineage.write-rows', { lineage_id: lineageId, rows: [] })).toMatchObject({
      ok: false,
      error: { code: 'invalid_command' },
    });
    expect(
      await req('lineage.write-rows', {
        lineage_id: lineageId,
        rows: [{ pk: { id: 1 }, values: { nope: 1 } }],
      }),
    ).toMatchObject({ ok: false, error: { code: 'invalid_rows' } });
    expect(await commitCount()).toBe(before);
    const ok = await req('lineage.write-rows', {
      lineage_id: lineageId,
      rows: [{ pk: { id: 2 }, values: { mode: 'over-nats' } }],
      actor: 'script',
    });
    expect(ok).toMatchObject({ ok: true, events: [{ type: 'CloudRowsWritten' }, { type: 'ControlIssued' }] });
    expect(
      await req('lineage.authority', { lineage_id: lineageId, authority: 'cloud_authoritative' }),
    ).toMatchObject({
      ok: true,
      events: [],
    });
  });

  it('a retried write whose first append went through (its ack lost) answers from the lineage, appending nothing', async () => {
    const rows = [{ pk: { id: 3 }, values: { mode: 'retried' } }];
    // The first attempt reached the event store under this key's decision id, then the answer was lost.
    const first = await service.run('lineage.write-rows', {
      project_id: A,
      lineage_id: lineageId,
      rows,
      idempotency_key: `${A}:lost-ack`,
    });
    const version = first.events.find((e) => e.type === 'CloudRowsWritten');
    const control = first.events.find((e) => e.type === 'ControlIssued');
    const before = await commitCount();
    const retry = await post(rowsUrl(), { rows }, 'lost-ack');
    expect(retry.statusCode).toBe(200);
    expect(retry.json()).toMatchObject({
      cloud_version: version?.type === 'CloudRowsWritten' ? version.data.cloud_version : -1,
      control_id: control?.type === 'ControlIssued' ? control.data.control_id : '',
      rows: [{ pk: { id: 3 } }],
      events: [],
    });
    expect(await commitCount()).toBe(before);
  });
});
