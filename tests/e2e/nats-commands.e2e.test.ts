import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { join } from 'node:path';
import { uuidv7 } from 'uuidv7';
import { ingestRows } from '../../api/testing';
import { JetStreamEventStore } from '../../infra/nats/event-store';
import { ensureStreams } from '../../infra/nats/streams';
import { LineageCommandHandler } from '../../worker/handler';
import { startNats, type NatsServer } from '../support/nats';
import { type Managed, startProcess } from '../support/proc';
import { ROOT, TEST_PROJECT } from '../support/stack';
import { waitFor } from '../support/wait';

type Reply =
  | { ok: true; lineage_id: string; version: number; events: { id: string; type: string }[] }
  | { ok: false; error: { code: string; message: string; details?: Record<string, unknown> } };

/**
 * `edge.cmd.<verb>` request/reply against a `sluice worker` process, as an operator scripts it
 * with `nats req`: JSON in, JSON out, typed errors for everything that is not a command.
 */
describe('NATS command subjects', () => {
  let nats: NatsServer;
  let worker: Managed;
  let nc: NatsConnection;
  let events: JetStreamEventStore;
  let handler: LineageCommandHandler;

  const req = async (verb: string, body: unknown): Promise<Reply> => {
    const m = await nc.request(`edge.cmd.${verb}`, typeof body === 'string' ? body : JSON.stringify(body), {
      timeout: 10_000,
    });
    return m.json<Reply>();
  };
  const errorOf = (r: Reply) => (r.ok ? undefined : r.error);
  const types = async (lineage: string) =>
    (await events.readCommits(lineage)).flatMap((c) => c.events.map((e) => e.type));
  const reviewOf = async (lineage: string) => {
    const { state } = await handler.load(lineage, true);
    if (state.status !== 'registered') throw new Error(`lineage ${lineage} is ${state.status}`);
    return state.reviews[0]!;
  };

  beforeAll(async () => {
    nats = await startNats();
    nc = await connect({ servers: nats.url });
    await ensureStreams(await jetstreamManager(nc));
    events = await JetStreamEventStore.create(nc);
    handler = new LineageCommandHandler(events);
    worker = startProcess(join(ROOT, 'bin', 'sluice'), ['worker'], {
      env: {
        ...process.env,
        SLUICE_NATS_URL: nats.url,
        SLUICE_MQTT_URL: nats.mqttUrl,
        SLUICE_PROJECT_ID: TEST_PROJECT,
        SLUICE_LOG_LEVEL: 'warn',
      },
    });
    // Serving once it answers at all (before that, requests fail with "no responders").
    await waitFor(
      async () => {
        if (worker.child.exitCode !== null) throw new Error(`worker exited: ${worker.output()}`);
        return (await req('ping', {})) as Reply | undefined;
      },
      { timeoutMs: 30_000, message: 'the worker serving edge.cmd.*' },
    );
  });
  afterAll(async () => {
    await nc?.close();
    await worker?.stop();
    await nats?.stop();
  });

  it('answers what is not a command with a typed error', async () => {
    const unknown = errorOf(await req('review.frobnicate', {}));
    expect(unknown).toMatchObject({ code: 'unknown_command' });
    expect(unknown?.message).toContain('review.claim');
    expect(errorOf(await req('review.claim', '{"lineage_id":'))).toMatchObject({ code: 'invalid_json' });
    const invalid = errorOf(await req('review.claim', { lineage_id: uuidv7(), action_version: 1 }));
    expect(invalid).toMatchObject({ code: 'invalid_command' });
    expect(invalid?.message).toMatch(/review_id/);
  });

  it('claims, refuses a stale version and another project, and approves', async () => {
    const lineage = uuidv7();
    await ingestRows(handler, {
      project_id: TEST_PROJECT,
      lineage_id: lineage,
      device_name: 'gw-nats',
      seqs: [1, 2],
    });
    const review = await reviewOf(lineage);
    const claim = {
      project_id: TEST_PROJECT,
      lineage_id: lineage,
      review_id: review.review_id,
      action_version: 1,
      idempotency_key: 'nats-claim-1',
      actor: 'ops@nats',
    };
    const ok = await req('review.claim', claim);
    expect(ok).toMatchObject({ ok: true, lineage_id: lineage, events: [{ type: 'SchemaReviewClaimed' }] });

    // A retried request appends nothing twice.
    const retried = await req('review.claim', claim);
    expect(typeof retried.ok).toBe('boolean');
    expect((await types(lineage)).filter((t) => t === 'SchemaReviewClaimed')).toHaveLength(1);

    const stale = errorOf(await req('review.claim', { ...claim, idempotency_key: 'nats-claim-2' }));
    expect(stale).toMatchObject({ code: 'stale_action_version', details: { current_action_version: 2 } });
    const elsewhere = errorOf(
      await req('review.approve', {
        ...claim,
        project_id: uuidv7(),
        action_version: 2,
        idempotency_key: 'x',
      }),
    );
    expect(elsewhere).toMatchObject({ code: 'not_found' });

    const approved = await req('review.approve', {
      lineage_id: lineage,
      review_id: review.review_id,
      action_version: 2,
      column_actions: [{ column: 'mode', action: 'mirror', mirror_column_name: 'hvac_mode' }],
      actor: 'ops@nats',
    });
    expect(approved.ok).toBe(true);
    expect(approved.ok && approved.events.map((e) => e.type)).toEqual(
      expect.arrayContaining(['SchemaReviewApproved', 'StagedRowsReleased']),
    );
    const commits = await events.readCommits(lineage);
    const approval = commits.flatMap((c) => c.events).find((e) => e.type === 'SchemaReviewApproved');
    expect(approval?.metadata.actor).toBe('ops@nats');
    expect((await reviewOf(lineage)).status).toBe('approved');
  });

  it('rejects, deletes, and refuses commands on a deleted lineage', async () => {
    const lineage = uuidv7();
    await ingestRows(handler, {
      project_id: TEST_PROJECT,
      lineage_id: lineage,
      device_name: 'gw-nats-2',
      seqs: [1],
    });
    const review = await reviewOf(lineage);
    const base = { lineage_id: lineage, review_id: review.review_id };
    expect(errorOf(await req('review.reject', { ...base, action_version: 1, reason: 'nope' }))).toMatchObject(
      {
        code: 'illegal_transition',
      },
    );
    expect((await req('review.claim', { ...base, action_version: 1 })).ok).toBe(true);
    expect(await req('review.reject', { ...base, action_version: 2, reason: 'firmware bug' })).toMatchObject({
      ok: true,
      events: [{ type: 'SchemaReviewRejected' }],
    });
    expect(await req('lineage.delete', { lineage_id: lineage, reason: 'table retired' })).toMatchObject({
      ok: true,
      events: [{ type: 'LineageDeleted' }],
    });
    expect(errorOf(await req('review.claim', { ...base, action_version: 3 }))).toMatchObject({
      code: 'lineage_deleted',
    });
  });
});
