/**
 * The registry follower carries an approval to every waiting lineage, from the stream: an
 * approval appended while no worker runs reaches the lineages once one starts, and a second
 * follower pass appends nothing twice. Real nats-server, real event stores.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { uuidv7 } from 'uuidv7';
import { DEFAULT_POLICY } from '../../domain/policy/policy';
import { schemaHash } from '../../domain/protocol/fingerprint';
import { registryView } from '../../domain/registry/decide';
import { registryId } from '../../domain/registry/events';
import { JetStreamEventStore } from '../../infra/nats/event-store';
import { RegistryEventStore } from '../../infra/nats/registry-events';
import { ensureStreams } from '../../infra/nats/streams';
import { silentLogger } from '../../infra/log';
import { LineageCommandHandler } from '../../worker/handler';
import { RegistryFollower } from '../../worker/registry-follower';
import { RegistryCommandHandler } from '../../worker/registry-handler';
import { DEVICE_STATE } from '../support/fixtures';
import { startNats, type NatsServer } from '../support/nats';
import { waitFor } from '../support/wait';

const P = '0190a000-0000-7000-8000-0000000000d1';
const H = schemaHash(DEVICE_STATE);

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

it('an approval made while no worker runs reaches every waiting lineage once a follower starts, once', async () => {
  const events = await JetStreamEventStore.create(nc);
  const lineages = new LineageCommandHandler(events);
  const registries = new RegistryCommandHandler(await RegistryEventStore.create(nc));
  const key = {
    project_id: P,
    scope: 'project' as const,
    scope_id: P,
    source_table: 'device_state',
    schema_hash: H,
  };
  const id = registryId(key);

  // Three devices' first batches: each lineage waits for the entry and enrolls.
  const ids = [uuidv7(), uuidv7(), uuidv7()];
  for (const [n, lineageId] of ids.entries()) {
    const view = registryView(key, (await registries.load(id)).state);
    await lineages.execute(
      lineageId,
      {
        type: 'IngestRowBatch',
        data: {
          project_id: P,
          device_id: uuidv7(),
          device_name: `gw-${n}`,
          new_lineage_id: lineageId,
          new_review_id: uuidv7(),
          new_control_id: uuidv7(),
          new_replay_id: uuidv7(),
          now: new Date().toISOString(),
          policy: { ...DEFAULT_POLICY, schema_coalescing_mode: 'project' },
          registry: view,
          batch: {
            format_version: 1,
            capture_strategy: 'sqlite_row_batch_v1',
            batch_id: uuidv7(),
            journal_epoch: uuidv7(),
            source_table: 'device_state',
            schema_hash: H,
            schema_columns: DEVICE_STATE,
            first_commit_seq: 1,
            last_commit_seq: 2,
            rows: [1, 2].map((q) => ({
              commit_seq: q,
              op: 'insert' as const,
              pk: { id: q },
              row: { id: q },
            })),
          },
        },
      },
      { decision_id: uuidv7() },
    );
    await registries.execute(
      id,
      {
        type: 'EnrollLineage',
        data: {
          ...key,
          lineage_id: lineageId,
          device_id: `d${n}`,
          schema_columns: DEVICE_STATE,
          new_review_id: uuidv7(),
        },
      },
      { decision_id: uuidv7() },
    );
  }
  const { state } = await registries.load(id);
  if (state.status !== 'registered') throw new Error('entry not registered');
  expect(state.lineages).toEqual(ids);
  const review = state.reviews[0]!;
  await registries.execute(
    id,
    { type: 'ClaimRegistryReview', data: { review_id: review.review_id, action_version: 1 } },
    { decision_id: uuidv7(), actor: 'ops' },
  );
  const approved = await registries.execute(
    id,
    { type: 'ApproveRegistryReview', data: { review_id: review.review_id, action_version: 2 } },
    { decision_id: uuidv7(), actor: 'ops' },
  );
  const approvalEvent = approved.events[0]!;

  // No follower yet: every lineage still waits, rows staged.
  for (const l of ids) {
    const s = (await lineages.load(l, true)).state;
    expect(s.status === 'registered' && s.pause_reasons).toEqual(['schema_review']);
  }

  const follower = new RegistryFollower({ nc, lineages, registries, log: silentLogger() });
  await follower.start();
  try {
    for (const l of ids) {
      const taken = await waitFor(
        async () => (await events.load(l)).events.find((e) => e.type === 'SchemaApprovedByRegistry'),
        { message: `approval on lineage ${l}` },
      );
      expect(taken.metadata).toMatchObject({
        causation_id: approvalEvent.id,
        correlation_id: id,
        actor: 'ops',
      });
      const s = (await lineages.load(l, true)).state;
      expect(
        s.status === 'registered' && [s.pause_reasons, s.coalesced?.registry_id, s.replay?.done],
      ).toEqual([[], id, false]);
    }
  } finally {
    await follower.stop();
  }

  // A follower of its own, from the first message: it re-reads every approval and appends nothing.
  const jsm = await jetstreamManager(nc);
  await jsm.consumers.delete('SLUICE_REGISTRY', 'sluice-registry-follower');
  const before = await Promise.all(ids.map(async (l) => (await events.load(l)).version));
  const again = new RegistryFollower({
    nc,
    lineages: new LineageCommandHandler(events),
    registries,
    log: silentLogger(),
  });
  await again.start();
  try {
    await waitFor(
      async () => {
        const info = await jsm.consumers.info('SLUICE_REGISTRY', 'sluice-registry-follower');
        return info.num_pending === 0 && info.num_ack_pending === 0 ? true : undefined;
      },
      { message: 'the second follower drained the stream' },
    );
  } finally {
    await again.stop();
  }
  expect(await Promise.all(ids.map(async (l) => (await events.load(l)).version))).toEqual(before);
});
