import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import type { FastifyInstance } from 'fastify';
import { uuidv7 } from 'uuidv7';
import { schemaHash } from '../domain/protocol/fingerprint';
import { DEFAULT_POLICY } from '../domain/policy/policy';
import { JetStreamEventStore } from '../infra/nats/event-store';
import { ensureStreams } from '../infra/nats/streams';
import { silentLogger } from '../infra/log';
import { createMetrics } from '../infra/metrics';
import { type Projector, startProjector } from '../projections';
import { DEVICE_STATE } from '../tests/support/fixtures';
import { DIALECTS, openTestStore, type TestStore } from '../projections/test-support/stores';
import { CommandService } from '../worker/commands';
import { LineageCommandHandler } from '../worker/handler';
import { startNats, type NatsServer } from '../tests/support/nats';
import { waitFor } from '../tests/support/wait';
import { Registry } from '../infra/nats/registry';
import { MANAGE, READ, TokenBook } from './auth/tokens';
import { buildApp } from './app';

const A = '0190a000-0000-7000-8000-00000000000a';
const B = '0190a000-0000-7000-8000-00000000000b';
const MANAGER = 'manager-token-aaaaaaaaaaaa';
const READER = 'reader-token-aaaaaaaaaaaaa';
const OTHER = 'other-project-token-bbbbbb';

let nats: NatsServer;
let nc: NatsConnection;
beforeAll(async () => {
  nats = await startNats();
  nc = await connect({ servers: nats.url });
  await ensureStreams(await jetstreamManager(nc));
});
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

describe.each(DIALECTS)('HTTP API on %s', (dialect) => {
  let ts: TestStore;
  let app: FastifyInstance;
  let projector: Projector;
  let handler: LineageCommandHandler;
  let lineageId: string;
  const base = `/core/api/v1/projects/${A}/edge`;
  const auth = (token = MANAGER) => ({ authorization: `Bearer ${token}` });

  beforeAll(async () => {
    ts = await openTestStore(dialect);
    const events = await JetStreamEventStore.create(nc);
    handler = new LineageCommandHandler(events);
    const commands = new CommandService(handler);
    projector = await startProjector({ nc, store: ts.store, log: silentLogger() });
    const registry = await Registry.open(nc);
    app = await buildApp({
      store: ts.store,
      commands,
      events,
      policies: registry,
      metrics: createMetrics(),
      tokens: new TokenBook([
        { token: MANAGER, project_id: A, permissions: [READ, MANAGE], name: 'ops' },
        { token: READER, project_id: A, permissions: [READ] },
        { token: OTHER, project_id: B, permissions: [READ, MANAGE] },
      ]),
    });
    lineageId = uuidv7();
    const rows = [1, 2, 3].map((s) => ({
      commit_seq: s,
      op: 'insert' as const,
      pk: { id: s },
      row: { id: s, mode: `m${s}` },
    }));
    await handler.execute(
      lineageId,
      {
        type: 'IngestRowBatch',
        data: {
          project_id: A,
          device_id: uuidv7(),
          device_name: `gw-${dialect}`,
          new_lineage_id: lineageId,
          new_review_id: uuidv7(),
          new_control_id: uuidv7(),
          new_replay_id: uuidv7(),
          now: new Date().toISOString(),
          policy: DEFAULT_POLICY,
          batch: {
            format_version: 1,
            capture_strategy: 'sqlite_row_batch_v1',
            batch_id: uuidv7(),
            journal_epoch: uuidv7(),
            source_table: 'device_state',
            schema_hash: schemaHash(DEVICE_STATE),
            schema_columns: DEVICE_STATE,
            first_commit_seq: 1,
            last_commit_seq: 3,
            rows,
          },
        },
      },
      { decision_id: uuidv7() },
    );
    await projector.waitForCaughtUp();
  });
  afterAll(async () => {
    await app?.close();
    await projector?.stop();
    await ts?.cleanup();
  });

  const review = async () => {
    const r = await app.inject({
      method: 'GET',
      url: `${base}/schema-reviews?lineage_id=${lineageId}`,
      headers: auth(),
    });
    return r.json().items[0] as { review_id: string; action_version: number; status: string };
  };

  it('needs a bearer token', async () => {
    const r = await app.inject({ method: 'GET', url: `${base}/lineages` });
    expect(r.statusCode).toBe(401);
    expect(r.json().code).toBe('unauthenticated');
    expect(
      (await app.inject({ method: 'GET', url: `${base}/lineages`, headers: auth('nope-nope-nope-nope') }))
        .statusCode,
    ).toBe(401);
  });

  it('hides one project from another project’s token', async () => {
    const r = await app.inject({ method: 'GET', url: `${base}/lineages`, headers: auth(OTHER) });
    expect(r.statusCode).toBe(404);
    const own = await app.inject({
      method: 'GET',
      url: `/core/api/v1/projects/${B}/edge/lineages/${lineageId}`,
      headers: auth(OTHER),
    });
    expect(own.statusCode).toBe(404);
  });

  it('lists lineages and staged rows, with validated paging', async () => {
    const list = await app.inject({
      method: 'GET',
      url: `${base}/lineages?device_id=gw-${dialect}`,
      headers: auth(READER),
    });
    expect(list.statusCode).toBe(200);
    expect(list.json().items).toHaveLength(1);
    expect(list.json().items[0]).toMatchObject({
      lineage_id: lineageId,
      status: 'paused',
      pause_reasons: ['schema_review'],
      staged_rows: 3,
    });
    const staged = await app.inject({
      method: 'GET',
      url: `${base}/lineages/${lineageId}/staged-rows?limit=2`,
      headers: auth(READER),
    });
    expect(staged.json().items.map((r: { commit_seq: number }) => r.commit_seq)).toEqual([1, 2]);
    const next = await app.inject({
      method: 'GET',
      url: `${base}/lineages/${lineageId}/staged-rows?limit=2&page=2`,
      headers: auth(READER),
    });
    expect(next.json().items.map((r: { commit_seq: number }) => r.commit_seq)).toEqual([3]);
    const tooMany = await app.inject({ method: 'GET', url: `${base}/lineages?limit=501`, headers: auth() });
    expect(tooMany.statusCode).toBe(400);
    expect(tooMany.json().code).toBe('invalid_request');
    const missing = await app.inject({ method: 'GET', url: `${base}/lineages/${uuidv7()}`, headers: auth() });
    expect(missing.statusCode).toBe(404);
  });

  it('refuses mutations from a read token and without an Idempotency-Key', async () => {
    const r = await review();
    const ro = await app.inject({
      method: 'POST',
      url: `${base}/schema-reviews/${r.review_id}/claim`,
      headers: { ...auth(READER), 'idempotency-key': 'ro-1' },
      payload: { action_version: r.action_version },
    });
    expect(ro.statusCode).toBe(403);
    const noKey = await app.inject({
      method: 'POST',
      url: `${base}/schema-reviews/${r.review_id}/claim`,
      headers: auth(),
      payload: { action_version: 1 },
    });
    expect(noKey.statusCode).toBe(400);
    expect((await review()).status).toBe('queued');
  });

  it('claims once per Idempotency-Key, refuses a reused key with another body, and a stale version', async () => {
    const r = await review();
    const claim = (key: string, v: number) =>
      app.inject({
        method: 'POST',
        url: `${base}/schema-reviews/${r.review_id}/claim`,
        headers: { ...auth(), 'idempotency-key': key },
        payload: { action_version: v },
      });
    const first = await claim('claim-1', r.action_version);
    expect(first.statusCode).toBe(200);
    expect(first.json().events.map((e: { type: string }) => e.type)).toEqual(['SchemaReviewClaimed']);
    const replay = await claim('claim-1', r.action_version);
    expect(replay.statusCode).toBe(200);
    expect(replay.json()).toEqual(first.json());
    const events = (await handler.load(lineageId, true)).state;
    expect(events.status === 'registered' && events.reviews[0]!.action_version).toBe(2);
    expect((await claim('claim-1', 99)).statusCode).toBe(422);
    const stale = await claim('claim-2', r.action_version);
    expect(stale.statusCode).toBe(409);
    expect(stale.json()).toMatchObject({
      code: 'stale_action_version',
      details: { current_action_version: 2 },
    });
  });

  it('approves, and the mirror fills', async () => {
    await waitFor(async () => (await review()).status === 'in_review', { message: 'claim projected' });
    const r = await review();
    const ok = await app.inject({
      method: 'POST',
      url: `${base}/schema-reviews/${r.review_id}/approve`,
      headers: { ...auth(), 'idempotency-key': 'approve-1' },
      payload: {
        action_version: r.action_version,
        column_actions: [{ column: 'mode', action: 'mirror', mirror_column_name: 'hvac_mode' }],
      },
    });
    expect(ok.statusCode).toBe(200);
    const mirror = await waitFor(
      async () => {
        const m = await app.inject({
          method: 'GET',
          url: `${base}/lineages/${lineageId}/mirror-rows`,
          headers: auth(READER),
        });
        const body = m.json() as { items?: { row: unknown }[] };
        return body.items?.length === 3 ? body : undefined;
      },
      { message: 'mirror rows' },
    );
    expect({ first: mirror.items?.[0]?.row, all: mirror }).toMatchObject({
      first: { id: 1, hvac_mode: 'm1' },
    });
    expect(Object.keys(mirror.items?.[0]?.row as object).sort()).toEqual(['hvac_mode', 'id']);
    const detail = await app.inject({
      method: 'GET',
      url: `${base}/lineages/${lineageId}`,
      headers: auth(READER),
    });
    expect(detail.json()).toMatchObject({ status: 'active', pause_reasons: [], staged_rows: 0 });
  });

  it('patches only the policy fields given', async () => {
    const before = (await app.inject({ method: 'GET', url: `${base}/policy`, headers: auth(READER) })).json();
    const rows = 5000 + Math.floor(Math.random() * 1000);
    const patch = await app.inject({
      method: 'PATCH',
      url: `${base}/policy`,
      headers: { ...auth(), 'idempotency-key': `policy-${dialect}` },
      payload: { max_pending_rows_per_lineage: rows },
    });
    expect(patch.statusCode).toBe(200);
    expect(patch.json()).toEqual({ ...before, max_pending_rows_per_lineage: rows });
    const bad = await app.inject({
      method: 'PATCH',
      url: `${base}/policy`,
      headers: { ...auth(), 'idempotency-key': 'p3' },
      payload: { nope: 1 },
    });
    expect(bad.statusCode).toBe(400);
    const ro = await app.inject({
      method: 'PATCH',
      url: `${base}/policy`,
      headers: { ...auth(READER), 'idempotency-key': 'p4' },
      payload: { resume_threshold_percent: 50 },
    });
    expect(ro.statusCode).toBe(403);
  });

  it('resets materialization and lists pending controls', async () => {
    const reset = await app.inject({
      method: 'POST',
      url: `${base}/lineages/${lineageId}/reset-materialization`,
      headers: { ...auth(), 'idempotency-key': `reset-${dialect}` },
    });
    expect(reset.statusCode).toBe(200);
    // The lineage is healthy: nothing to reset, and nothing is recorded.
    expect(reset.json().events).toEqual([]);
    const controls = await app.inject({
      method: 'GET',
      url: `${base}/pending-controls`,
      headers: auth(READER),
    });
    expect(controls.statusCode).toBe(200);
    expect(controls.json()).toMatchObject({ items: [], total: 0 });
  });

  it('refuses query parameters a route does not know', async () => {
    const typo = await app.inject({ method: 'GET', url: `${base}/lineages?device=x`, headers: auth(READER) });
    expect(typo.statusCode).toBe(400);
    expect(typo.json()).toMatchObject({ code: 'invalid_request' });
    expect(typo.json().message).toMatch(/device/);
    const none = await app.inject({
      method: 'GET',
      url: `${base}/lineages/${lineageId}?verbose=1`,
      headers: auth(READER),
    });
    expect(none.statusCode).toBe(400);
    const known = await app.inject({
      method: 'GET',
      url: `${base}/lineages?status=active&limit=5`,
      headers: auth(READER),
    });
    expect(known.statusCode).toBe(200);
  });

  it('serves OpenAPI, health and metrics', async () => {
    const doc = await app.inject({ method: 'GET', url: '/openapi.json' });
    expect(doc.statusCode).toBe(200);
    expect(Object.keys(doc.json().paths)).toContain('/core/api/v1/projects/{project_id}/edge/lineages');
    expect((await app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    const metrics = await app.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.body).toContain('sluice_api_request_seconds');
  });
});
