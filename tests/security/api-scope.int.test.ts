import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import type { FastifyInstance } from 'fastify';
import { uuidv7 } from 'uuidv7';
import { buildApp } from '../../api/app';
import { MANAGE, READ, TokenBook } from '../../api/auth/tokens';
import { ingestRows } from '../../api/testing';
import { JetStreamEventStore } from '../../infra/nats/event-store';
import { Registry } from '../../infra/nats/registry';
import { ensureStreams } from '../../infra/nats/streams';
import { silentLogger } from '../../infra/log';
import { createMetrics } from '../../infra/metrics';
import { type Projector, startProjector } from '../../projections';
import { openTestStore, type TestStore } from '../../projections/test-support/stores';
import { CommandService } from '../../worker/commands';
import { LineageCommandHandler } from '../../worker/handler';
import { startNats, type NatsServer } from '../support/nats';

/**
 * API tokens are scoped per project and permission, on every route the OpenAPI document lists:
 * no token or a malformed one is 401 everywhere; another project's token (even one that may
 * manage) learns nothing (never a 2xx, objects read as 404); a read-only token can change nothing
 * (403 on every mutation); and none of these attempts appends an event.
 */
const A = '0190a000-0000-7000-8000-0000000000a1';
const B = '0190a000-0000-7000-8000-0000000000b2';
const MANAGER = 'scope-manager-token-aaaaaaa';
const READER = 'scope-reader-token-aaaaaaaa';
const OTHER = 'scope-other-project-token-b';

let nats: NatsServer;
let nc: NatsConnection;
let ts: TestStore;
let app: FastifyInstance;
let projector: Projector;
let events: JetStreamEventStore;
const lineageId = uuidv7();
let reviewId: string;

beforeAll(async () => {
  nats = await startNats();
  nc = await connect({ servers: nats.url });
  await ensureStreams(await jetstreamManager(nc));
  ts = await openTestStore('sqlite');
  events = await JetStreamEventStore.create(nc);
  const handler = new LineageCommandHandler(events);
  projector = await startProjector({ nc, store: ts.store, log: silentLogger() });
  app = await buildApp({
    store: ts.store,
    commands: new CommandService(handler),
    events,
    policies: await Registry.open(nc),
    metrics: createMetrics(),
    tokens: new TokenBook([
      { token: MANAGER, project_id: A, permissions: [READ, MANAGE] },
      { token: READER, project_id: A, permissions: [READ] },
      { token: OTHER, project_id: B, permissions: [READ, MANAGE] },
    ]),
  });
  await ingestRows(handler, { project_id: A, lineage_id: lineageId, device_name: 'gw-scope', seqs: [1, 2] });
  await projector.waitForCaughtUp();
  const r = await app.inject({
    url: `/core/api/v1/projects/${A}/edge/schema-reviews`,
    headers: { authorization: `Bearer ${MANAGER}` },
  });
  reviewId = (r.json() as { items: { review_id: string }[] }).items[0]!.review_id;
});
afterAll(async () => {
  await app?.close();
  await projector?.stop();
  await ts?.cleanup();
  await nc?.close();
  await nats?.stop();
});

type Route = { method: string; url: string; mutation: boolean };

async function routes(): Promise<Route[]> {
  const doc = (await app.inject({ url: '/openapi.json' })).json() as {
    paths: Record<string, Record<string, unknown>>;
  };
  const out: Route[] = [];
  for (const [path, ops] of Object.entries(doc.paths)) {
    if (!path.includes('{project_id}')) continue;
    for (const method of Object.keys(ops)) {
      const url = path
        .replace('{project_id}', A)
        .replace(/\{(review_id|id)\}/g, (m, name: string) =>
          path.includes('schema-reviews') && name !== 'lineage_id' ? reviewId : lineageId,
        )
        .replace(/\{[a-z_]+\}/g, lineageId);
      out.push({ method: method.toUpperCase(), url, mutation: method !== 'get' });
    }
  }
  return out;
}

const call = (r: Route, headers: Record<string, string>) =>
  app.inject({
    method: r.method as 'GET',
    url: r.url,
    headers: {
      ...headers,
      ...(r.mutation ? { 'idempotency-key': uuidv7(), 'content-type': 'application/json' } : {}),
    },
    ...(r.mutation
      ? {
          payload: r.url.endsWith('/policy')
            ? { max_pending_rows_per_lineage: 1000 }
            : { action_version: 1, reason: 'scope test', rows: [{ pk: { id: 1 }, values: { mode: 'x' } }] },
        }
      : {}),
  });

it('covers the project routes of the OpenAPI document', async () => {
  const rs = await routes();
  expect(rs.filter((r) => r.mutation).length).toBeGreaterThanOrEqual(6);
  expect(rs.filter((r) => !r.mutation).length).toBeGreaterThanOrEqual(10);
});

it('answers 401 to no token and to every malformed or unknown one, on every route', async () => {
  const bad: Record<string, string>[] = [
    {},
    { authorization: '' },
    { authorization: 'Bearer' },
    { authorization: 'Bearer ' },
    { authorization: `Basic ${Buffer.from(`x:${MANAGER}`).toString('base64')}` },
    { authorization: `Token ${MANAGER}` },
    { authorization: `Bearer ${MANAGER.slice(0, -1)}` },
    { authorization: `Bearer ${MANAGER}x` },
    { authorization: `Bearer ${MANAGER.toUpperCase()}` },
    { authorization: `Bearer ${MANAGER}\u0000` },
    { authorization: `Bearer ${READER.slice(0, 16)}` },
    { 'x-api-token': MANAGER },
  ];
  for (const r of await routes()) {
    for (const h of bad) {
      const res = await call(r, h);
      expect([r.method, r.url, JSON.stringify(h), res.statusCode]).toEqual([
        r.method,
        r.url,
        JSON.stringify(h),
        401,
      ]);
    }
    // A token in the query string is not a token.
    const q = await app.inject({
      method: r.method as 'GET',
      url: `${r.url}${r.url.includes('?') ? '&' : '?'}token=${MANAGER}`,
    });
    expect([r.url, q.statusCode]).toEqual([r.url, 401]);
  }
});

it('gives another project’s token nothing and a read token no mutation, and appends no event', async () => {
  const before = (await events.load(lineageId)).events.length;
  for (const r of await routes()) {
    const other = await call(r, { authorization: `Bearer ${OTHER}` });
    expect([r.method, r.url, other.statusCode < 300]).toEqual([r.method, r.url, false]);
    if (!r.mutation) expect([r.method, r.url, other.statusCode]).toEqual([r.method, r.url, 404]);
    if (r.mutation) {
      const ro = await call(r, { authorization: `Bearer ${READER}` });
      expect([r.method, r.url, ro.statusCode]).toEqual([r.method, r.url, 403]);
    } else {
      const ok = await call(r, { authorization: `Bearer ${READER}` });
      expect([r.method, r.url, ok.statusCode < 500]).toEqual([r.method, r.url, true]);
    }
  }
  expect((await events.load(lineageId)).events.length).toBe(before);
  const review = await app.inject({
    url: `/core/api/v1/projects/${A}/edge/schema-reviews/${reviewId}`,
    headers: { authorization: `Bearer ${MANAGER}` },
  });
  expect(review.json()).toMatchObject({ status: 'queued', action_version: 1 });
  const policy = await app.inject({
    url: `/core/api/v1/projects/${A}/edge/policy`,
    headers: { authorization: `Bearer ${MANAGER}` },
  });
  expect(policy.json()).toMatchObject({ max_pending_rows_per_lineage: 100_000 });
});

it('refuses a read token before reading the body: 403 even when the body is not JSON', async () => {
  const mutations = (await routes()).filter((r) => r.mutation);
  expect(mutations.length).toBeGreaterThanOrEqual(14);
  for (const r of mutations) {
    for (const payload of ['{not json', '\u0000', Buffer.from([0x7b, 0xff, 0xfe, 0x7d])]) {
      const res = await app.inject({
        method: r.method as 'POST',
        url: r.url,
        headers: {
          authorization: `Bearer ${READER}`,
          'content-type': 'application/json',
          'idempotency-key': uuidv7(),
        },
        payload,
      });
      expect([r.method, r.url, res.statusCode, res.json().code]).toEqual([r.method, r.url, 403, 'forbidden']);
    }
  }
});

it('refuses a JSON body that is not valid UTF-8 with invalid_utf8, and stores nothing', async () => {
  const before = (await events.load(lineageId)).events.length;
  // {"action_version": 1, "reason": "<0xC3 0x28>"}: a lead byte without its continuation.
  const body = Buffer.concat([
    Buffer.from('{"action_version": 1, "reason": "bad '),
    Buffer.from([0xc3, 0x28]),
    Buffer.from('"}'),
  ]);
  for (const r of (await routes()).filter((x) => x.mutation)) {
    const res = await app.inject({
      method: r.method as 'POST',
      url: r.url,
      headers: {
        authorization: `Bearer ${MANAGER}`,
        'content-type': 'application/json; charset=utf-8',
        'idempotency-key': uuidv7(),
      },
      payload: body,
    });
    expect([r.method, r.url, res.statusCode, res.json().code]).toEqual([
      r.method,
      r.url,
      400,
      'invalid_utf8',
    ]);
  }
  expect((await events.load(lineageId)).events.length).toBe(before);
  // Valid UTF-8 beyond ASCII still parses (and is judged by the route as before).
  const ok = await app.inject({
    method: 'POST',
    url: `/core/api/v1/projects/${A}/edge/schema-reviews/${reviewId}/reject`,
    headers: {
      authorization: `Bearer ${MANAGER}`,
      'content-type': 'application/json',
      'idempotency-key': uuidv7(),
    },
    payload: Buffer.from('{"action_version": 99, "reason": "größe 温度"}'),
  });
  expect(ok.json().code).not.toBe('invalid_utf8');
  expect(ok.statusCode).toBe(409);
});
