import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import type { FastifyInstance } from 'fastify';
import { uuidv7 } from 'uuidv7';
import { JetStreamEventStore } from '../infra/nats/event-store';
import { ensureStreams } from '../infra/nats/streams';
import { silentLogger } from '../infra/log';
import { createMetrics } from '../infra/metrics';
import { type Projector, startProjector } from '../projections';
import { DIALECTS, openTestStore, type TestStore } from '../projections/test-support/stores';
import { CommandService } from '../worker/commands';
import { LineageCommandHandler } from '../worker/handler';
import { startNats, type NatsServer } from '../tests/support/nats';
import { waitFor } from '../tests/support/wait';
import { MANAGE, READ, TokenBook } from './auth/tokens';
import { buildApp } from './app';
import { readinessCheck } from './health';
import { ingestRows } from './testing';

const A = '0190a000-0000-7000-8000-0000000000a1';
const B = '0190a000-0000-7000-8000-0000000000b1';
const MANAGER = 'manager-token-operator-aaaa';
const READER = 'reader-token-operator-aaaaa';
const OTHER = 'other-project-token-operator';

type Bus = { nats: NatsServer; nc: NatsConnection; events: JetStreamEventStore };

/** A private nats-server per suite: metrics and lag count every lineage of the stream. */
async function startBus(): Promise<Bus> {
  const nats = await startNats();
  const nc = await connect({ servers: nats.url });
  await ensureStreams(await jetstreamManager(nc));
  return { nats, nc, events: await JetStreamEventStore.create(nc) };
}
async function stopBus(b: Bus | undefined): Promise<void> {
  await b?.nc.close();
  await b?.nats.stop();
}

type AuditItem = {
  seq: number;
  index: number;
  type: string;
  occurred_at: string;
  data: unknown;
  metadata: { actor?: string };
};
type AuditPage = { items: AuditItem[]; next_cursor: string | null; page: number | null; limit: number };

describe.each(DIALECTS)('operator surfaces of the API on %s', (dialect) => {
  let ts: TestStore;
  let app: FastifyInstance;
  let projector: Projector;
  let handler: LineageCommandHandler;
  let metrics: ReturnType<typeof createMetrics>;
  /** The handler's clock: decisions happen at times the test chooses, so `as_of` is exact. */
  let now = Date.parse('2026-03-01T10:00:00.000Z');
  const lineageId = uuidv7();
  const otherLineage = uuidv7();
  const base = `/core/api/v1/projects/${A}/edge`;
  const auth = (token = MANAGER) => ({ authorization: `Bearer ${token}` });
  const get = (url: string, token = MANAGER) => app.inject({ method: 'GET', url, headers: auth(token) });
  const post = (url: string, payload: unknown, key: string, token = MANAGER) =>
    app.inject({
      method: 'POST',
      url,
      headers: { ...auth(token), 'idempotency-key': key },
      payload: payload as object,
    });
  const commitCount = async (id = lineageId) => (await events.readCommits(id)).length;

  let bus: Bus;
  let nc: NatsConnection;
  let events: JetStreamEventStore;

  beforeAll(async () => {
    bus = await startBus();
    ({ nc, events } = bus);
    ts = await openTestStore(dialect);
    handler = new LineageCommandHandler(events, { clock: () => new Date(now) });
    projector = await startProjector({ nc, store: ts.store, log: silentLogger() });
    metrics = createMetrics();
    app = await buildApp({
      store: ts.store,
      commands: new CommandService(handler),
      events,
      metrics,
      tokens: new TokenBook([
        { token: MANAGER, project_id: A, permissions: [READ, MANAGE], name: 'ops' },
        { token: READER, project_id: A, permissions: [READ] },
        { token: OTHER, project_id: B, permissions: [READ, MANAGE] },
      ]),
      readiness: readinessCheck({
        natsConnected: () => !nc.isClosed(),
        store: ts.store,
        projections: () => projector.status(),
        maxLag: 10_000,
        metrics,
      }),
    });
    await ingestRows(handler, {
      project_id: A,
      lineage_id: lineageId,
      device_name: `op-${dialect}`,
      seqs: [1, 2, 3],
    });
    await ingestRows(handler, {
      project_id: B,
      lineage_id: otherLineage,
      device_name: `op-b-${dialect}`,
      seqs: [1],
    });
    await projector.waitForCaughtUp();
  });
  afterAll(async () => {
    await app?.close();
    await projector?.stop();
    await ts?.cleanup();
    await stopBus(bus);
  });

  const review = async () =>
    (await get(`${base}/schema-reviews?lineage_id=${lineageId}`)).json().items[0] as {
      review_id: string;
      action_version: number;
      status: string;
    };

  it('refuses without a token, hides other projects, and keeps read tokens from mutating', async () => {
    const none = await app.inject({ method: 'GET', url: `${base}/lineages/${lineageId}/events` });
    expect(none.statusCode).toBe(401);
    expect(none.json().code).toBe('unauthenticated');
    // A token of project B on project A's routes, and project A's lineage under project B.
    expect((await get(`${base}/lineages/${lineageId}/events`, OTHER)).statusCode).toBe(404);
    const crossed = await get(`/core/api/v1/projects/${B}/edge/lineages/${lineageId}/events`, OTHER);
    expect(crossed.statusCode).toBe(404);
    expect(crossed.json().code).toBe('not_found');
    expect((await get(`${base}/lineages/${otherLineage}/events`)).statusCode).toBe(404);
    expect((await get(`${base}/lineages/${otherLineage}`)).statusCode).toBe(404);

    const before = await commitCount();
    const r = await review();
    const ro = await post(
      `${base}/schema-reviews/${r.review_id}/claim`,
      { action_version: 1 },
      'ro-claim',
      READER,
    );
    expect(ro.statusCode).toBe(403);
    expect(ro.json().code).toBe('forbidden');
    const roDelete = await app.inject({
      method: 'DELETE',
      url: `${base}/lineages/${lineageId}`,
      headers: { ...auth(READER), 'idempotency-key': 'ro-delete' },
    });
    expect(roDelete.statusCode).toBe(403);
    expect(await commitCount()).toBe(before);
  });

  it('replays an Idempotency-Key: same answer, no second event; another body is refused', async () => {
    const r = await review();
    const before = await commitCount();
    now += 60 * 60_000; // claimed an hour after the rows arrived
    const first = await post(
      `${base}/schema-reviews/${r.review_id}/claim`,
      { action_version: 1 },
      `claim-${dialect}`,
    );
    expect(first.statusCode).toBe(200);
    expect(first.json()).toMatchObject({
      events: [{ type: 'SchemaReviewClaimed' }],
      review: { review_id: r.review_id, status: 'in_review', action_version: 2 },
    });
    const again = await post(
      `${base}/schema-reviews/${r.review_id}/claim`,
      { action_version: 1 },
      `claim-${dialect}`,
    );
    expect(again.statusCode).toBe(200);
    expect(again.json()).toEqual(first.json());
    const after = (await events.readCommits(lineageId)).slice(before);
    expect(after.flatMap((c) => c.events.map((e) => e.type))).toEqual(['SchemaReviewClaimed']);

    const reused = await post(
      `${base}/schema-reviews/${r.review_id}/claim`,
      { action_version: 2 },
      `claim-${dialect}`,
    );
    expect(reused.statusCode).toBe(422);
    expect(reused.json().code).toBe('idempotency_key_reused');
    const stale = await post(
      `${base}/schema-reviews/${r.review_id}/claim`,
      { action_version: 1 },
      `claim2-${dialect}`,
    );
    expect(stale.statusCode).toBe(409);
    expect(stale.json()).toMatchObject({
      code: 'stale_action_version',
      details: { current_action_version: 2 },
    });
    expect(await commitCount()).toBe(before + 1);
  });

  it('lists the audit trail in order, with cursor and page paging', async () => {
    await waitFor(async () => (await review()).status === 'in_review', { message: 'claim projected' });
    const r = await review();
    now += 60 * 60_000;
    const ok = await post(
      `${base}/schema-reviews/${r.review_id}/approve`,
      {
        action_version: 2,
        column_actions: [{ column: 'mode', action: 'mirror', mirror_column_name: 'hvac_mode' }],
      },
      `approve-${dialect}`,
    );
    expect(ok.statusCode).toBe(200);

    const all = (await get(`${base}/lineages/${lineageId}/events?limit=500`, READER)).json() as AuditPage;
    expect(all.next_cursor).toBeNull();
    const types = all.items.map((e) => e.type);
    expect(types[0]).toBe('LineageRegistered');
    expect(types).toEqual(
      expect.arrayContaining([
        'SchemaReviewQueued',
        'RowsStaged',
        'SchemaReviewClaimed',
        'SchemaReviewApproved',
      ]),
    );
    expect(types.indexOf('SchemaReviewClaimed')).toBeLessThan(types.indexOf('SchemaReviewApproved'));
    const seqs = all.items.map((e) => [e.seq, e.index]);
    expect([...seqs].sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!)).toEqual(seqs);
    const claimed = all.items.find((e) => e.type === 'SchemaReviewClaimed')!;
    expect(claimed).toMatchObject({ occurred_at: '2026-03-01T11:00:00.000Z', metadata: { actor: 'ops' } });
    // recorded_at is JetStream's clock (now), not the decision's (the test's clock).
    const recorded = Date.parse((claimed as unknown as { recorded_at: string }).recorded_at);
    expect(Math.abs(recorded - Date.now())).toBeLessThan(5 * 60_000);

    // Cursor paging and page paging both walk the same sequence.
    const walked: AuditItem[] = [];
    let after: string | null = null;
    do {
      const q: string = after ? `&after=${after}` : '';
      const p = (await get(`${base}/lineages/${lineageId}/events?limit=2${q}`)).json() as AuditPage;
      expect(p.items.length).toBeLessThanOrEqual(2);
      walked.push(...p.items);
      after = p.next_cursor;
    } while (after);
    expect(walked.map((e) => e.type)).toEqual(types);
    const page2 = (await get(`${base}/lineages/${lineageId}/events?limit=2&page=2`)).json() as AuditPage;
    expect(page2.items.map((e) => e.type)).toEqual(types.slice(2, 4));

    expect((await get(`${base}/lineages/${lineageId}/events?after=nope`)).json().code).toBe('invalid_cursor');
    expect((await get(`${base}/lineages/${lineageId}/events?as_of=yesterday`)).statusCode).toBe(400);
    expect((await get(`${base}/lineages/${uuidv7()}/events`)).statusCode).toBe(404);
  });

  it('folds the state as of a time', async () => {
    const asOf = async (t: string) => {
      const r = await get(`${base}/lineages/${lineageId}/events?as_of=${encodeURIComponent(t)}`);
      expect(r.statusCode).toBe(200);
      return r.json() as {
        as_of: string;
        version: number;
        state: Record<string, unknown> & { reviews?: { status: string }[] };
      };
    };
    const before = await asOf('2026-03-01T09:00:00Z');
    expect(before.state).toEqual({ status: 'unregistered' });
    expect(before.version).toBe(0);
    const arrived = await asOf('2026-03-01T10:30:00Z');
    expect(arrived.as_of).toBe('2026-03-01T10:30:00.000Z');
    expect(arrived.state).toMatchObject({
      status: 'registered',
      pause_reasons: ['schema_review'],
      staged_rows: 3,
    });
    expect(arrived.state.reviews?.[0]?.status).toBe('queued');
    const claimed = await asOf('2026-03-01T11:30:00+00:00');
    expect(claimed.state.reviews?.[0]?.status).toBe('in_review');
    expect(claimed.version).toBeGreaterThan(arrived.version);
    const latest = await asOf('2030-01-01T00:00:00Z');
    expect(latest.state.reviews?.[0]?.status).toBe('approved');
    expect(latest.state).toMatchObject({
      bindings: expect.arrayContaining([expect.objectContaining({ column: 'mode', target: 'hvac_mode' })]),
    });
  });

  it('deletes with a reason recorded in the event', async () => {
    const doomed = uuidv7();
    await ingestRows(handler, {
      project_id: A,
      lineage_id: doomed,
      device_name: `op-del-${dialect}`,
      seqs: [1],
    });
    await projector.waitForCaughtUp();
    const del = await app.inject({
      method: 'DELETE',
      url: `${base}/lineages/${doomed}`,
      headers: { ...auth(), 'idempotency-key': `del-${dialect}` },
      payload: { reason: 'table retired' },
    });
    expect(del.statusCode).toBe(200);
    const trail = (await get(`${base}/lineages/${doomed}/events`)).json() as AuditPage;
    expect(trail.items.at(-1)).toMatchObject({ type: 'LineageDeleted', data: { reason: 'table retired' } });
  });

  it('serves metrics from the read store and reports readiness with projection lag', async () => {
    await projector.waitForCaughtUp();
    const ready = await app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toMatchObject({
      ok: true,
      checks: { nats: { ok: true }, read_store: { ok: true }, projections: { ok: true, max_lag: 10_000 } },
    });
    const text = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(text).toMatch(/sluice_projection_lag\{projection="lineages"\} 0/);
    // Across projects: A's lineage is active, B's waits for review with one row, one was deleted.
    expect(text).toMatch(/sluice_lineages\{status="active"\} 1/);
    expect(text).toMatch(/sluice_lineages\{status="paused"\} 1/);
    expect(text).toMatch(/sluice_lineages\{status="deleted"\} 1/);
    expect(text).toMatch(/sluice_paused_lineages\{reason="schema_review"\} 1/);
    expect(text).toMatch(/sluice_paused_lineages\{reason="circuit_breaker"\} 0/);
    expect(text).toMatch(/^sluice_staged_rows 1$/m);
    expect(text).toMatch(
      /sluice_api_request_seconds_count\{route="[^"]*\/edge\/lineages\/:lineage_id\/events",method="GET",status="200"\}/,
    );
  });
});

describe('readiness with a projection behind', () => {
  it('is unready while a projection lags more than the limit', async () => {
    const bus = await startBus();
    const { nc, events } = bus;
    const ts = await openTestStore('sqlite');
    // A status-only projector over an empty store: every checkpoint is 0 while the stream is not.
    const idle = await startProjector({ nc, store: ts.store, log: silentLogger(), only: [] });
    await ingestRows(new LineageCommandHandler(events), {
      project_id: A,
      lineage_id: uuidv7(),
      device_name: 'lagging',
      seqs: [1],
    });
    try {
      const check = readinessCheck({
        natsConnected: () => true,
        store: ts.store,
        projections: () => idle.status(),
        maxLag: 0,
      });
      const checks = await check();
      expect(checks.projections).toMatchObject({ ok: false });
      expect(checks.projections?.detail).toMatch(/events behind \(limit 0\)/);
      expect(checks.read_store?.ok).toBe(true);
      const relaxed = await readinessCheck({ natsConnected: () => false, store: ts.store, maxLag: 0 })();
      expect(relaxed.nats).toMatchObject({ ok: false });
      expect(relaxed.projections).toBeUndefined();
    } finally {
      await idle.stop();
      await ts.cleanup();
      await stopBus(bus);
    }
  });
});

describe('audit of a long history', () => {
  it('reads past one chunk of commits, by page, by cursor and as of a time', async () => {
    const bus = await startBus();
    const ts = await openTestStore('sqlite');
    const handler = new LineageCommandHandler(bus.events);
    const app = await buildApp({
      store: ts.store,
      commands: new CommandService(handler),
      events: bus.events,
      metrics: createMetrics(),
      tokens: new TokenBook([{ token: MANAGER, project_id: A, permissions: [READ] }]),
    });
    try {
      const lineage = uuidv7();
      const epoch = uuidv7();
      // 520 decisions of one staged row each, plus the registration's four events in the first.
      for (let s = 1; s <= 520; s++)
        await ingestRows(handler, {
          project_id: A,
          lineage_id: lineage,
          device_name: 'long',
          seqs: [s],
          journal_epoch: epoch,
        });
      const commits = await bus.events.readCommits(lineage);
      expect(commits).toHaveLength(520);
      expect(
        (await bus.events.readCommits(lineage, { fromVersion: commits[9]!.seq, limit: 3 })).map((c) => c.seq),
      ).toEqual(commits.slice(10, 13).map((c) => c.seq));
      const url = `/core/api/v1/projects/${A}/edge/lineages/${lineage}/events`;
      const get = async (q: string) =>
        (
          await app.inject({
            method: 'GET',
            url: `${url}?${q}`,
            headers: { authorization: `Bearer ${MANAGER}` },
          })
        ).json();
      const total = 520 + 4;
      const page2 = (await get('limit=500&page=2')) as AuditPage;
      expect(page2.items).toHaveLength(total - 500);
      expect(page2.next_cursor).toBeNull();
      const page1 = (await get('limit=500')) as AuditPage;
      const rest = (await get(`limit=500&after=${page1.next_cursor}`)) as AuditPage;
      expect(rest.items).toEqual(page2.items);
      const state = (await get('as_of=2100-01-01T00:00:00Z')) as {
        version: number;
        events: number;
        state: { staged_rows: number };
      };
      expect(state).toMatchObject({
        version: commits.at(-1)!.seq,
        events: total,
        state: { staged_rows: 520 },
      });
    } finally {
      await app.close();
      await ts.cleanup();
      await stopBus(bus);
    }
  });
});
