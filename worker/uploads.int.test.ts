import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { ObjectStore } from '@nats-io/obj';
import { uuidv7 } from 'uuidv7';
import { compress } from 'zstd-napi';
import { schemaHash } from '../domain/protocol/fingerprint';
import type { LineageCommand } from '../domain/lineage/decide';
import type { LineageEvent } from '../domain/lineage/events';
import { JetStreamEventStore } from '../infra/nats/event-store';
import { encodeJson } from '../infra/nats/ingress';
import { subjects } from '../infra/nats/names';
import { Registry } from '../infra/nats/registry';
import { ensureStreams } from '../infra/nats/streams';
import { silentLogger } from '../infra/log';
import { openUploadStore } from '../infra/uploads/store';
import { DEVICE_STATE } from '../tests/support/fixtures';
import { startNats, type NatsServer } from '../tests/support/nats';
import { waitFor } from '../tests/support/wait';
import type { CommandMeta } from './aggregate-handler';
import { type CommandResult, LineageCommandHandler } from './handler';
import { IngressWorker } from './ingress-worker';
import { ingressBacklog } from './ingress-partitions';
import { RegistryCommandHandler } from './registry-handler';
import { RegistryEventStore } from '../infra/nats/registry-events';

const PROJECT = '0190a000-0000-7000-8000-000000000001';
const ROWS = 20_000; // with ~120-byte lines: several chunks of 4096 rows

/** A handler that fails (like a crash of the worker) once, on one chunk of the upload. */
class FailingOnce extends LineageCommandHandler {
  failAt: number | undefined = 2;
  override async execute(id: string, command: LineageCommand, meta: CommandMeta): Promise<CommandResult> {
    if (command.type === 'IngestUploadChunk' && command.data.chunk === this.failAt) {
      this.failAt = undefined;
      throw new Error('worker lost its NATS connection mid-upload');
    }
    return super.execute(id, command, meta);
  }
}

let nats: NatsServer;
let nc: NatsConnection;
let store: ObjectStore;
beforeAll(async () => {
  nats = await startNats();
  nc = await connect({ servers: nats.url });
  await ensureStreams(await jetstreamManager(nc));
  store = await openUploadStore(nc);
});
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

/** A device's url_request, the object as the upload endpoint stores it, then its finalize. */
async function uploadOf(
  registry: Registry,
  events: JetStreamEventStore,
  opts: { project: string; device: string; rows: number },
): Promise<{ lineageId: string; uploadId: string }> {
  const deviceKey = `acme/${opts.device}`;
  const epoch = uuidv7();
  const uploadId = uuidv7();
  const common = {
    format_version: 1,
    upload_id: uploadId,
    source_table: 'device_state',
    journal_epoch: epoch,
    schema_hash: schemaHash(DEVICE_STATE),
    first_commit_seq: 1,
    last_commit_seq: opts.rows,
    row_count: opts.rows,
  };
  const ingress = (payload: Record<string, unknown>) => ({
    kind: 'request',
    payload,
    project_id: opts.project,
    topic_slug: 'acme',
    device_name: opts.device,
    device_key: deviceKey,
    received_at: new Date().toISOString(),
  });
  const js = jetstream(nc);
  await js.publish(
    subjects.ingress('request', deviceKey),
    encodeJson(
      ingress({ ...common, request_kind: 'url_request', request_id: uuidv7(), schema_columns: DEVICE_STATE }),
    ),
  );
  const lineageId = (
    await registry.resolveLineage(
      (await registry.resolveDevice(opts.project, 'acme', opts.device, uuidv7())).device_id,
      'device_state',
      uuidv7(),
    )
  ).lineageId;
  await waitFor(
    async () => (await events.load(lineageId, 0)).events.some((e) => e.type === 'UploadGranted'),
    { message: 'the grant' },
  );
  const lines = Array.from({ length: opts.rows }, (_, i) =>
    JSON.stringify({
      commit_seq: i + 1,
      op: 'insert',
      pk: { id: i + 1 },
      row: { id: i + 1, mode: `m${i}`.padEnd(60, '.') },
    }),
  ).join('\n');
  await store.putBlob(
    {
      name: uploadId,
      metadata: {
        device_key: deviceKey,
        lineage_id: lineageId,
        source_table: 'device_state',
        journal_epoch: epoch,
        row_count: String(opts.rows),
      },
    },
    compress(Buffer.from(lines)),
  );
  await js.publish(
    subjects.ingress('request', deviceKey),
    encodeJson(ingress({ ...common, request_kind: 'finalize', request_id: uuidv7() })),
  );
  return { lineageId, uploadId };
}

const completed = (events: JetStreamEventStore, lineageId: string) =>
  waitFor(
    async () => {
      const evs: readonly LineageEvent[] = (await events.load(lineageId, 0)).events;
      return evs.some((e) => e.type === 'UploadCompleted') ? evs : undefined;
    },
    { timeoutMs: 60_000, message: 'UploadCompleted' },
  );

it('a finalize interrupted mid-way resumes from the next chunk: every row once, then acked', async () => {
  const events = await JetStreamEventStore.create(nc);
  const handler = new FailingOnce(events);
  const registry = await Registry.open(nc);
  const worker = new IngressWorker({
    nc,
    handler,
    registry,
    log: silentLogger(),
    uploads: store,
    ackWaitMs: 5_000,
  });
  await worker.start();
  try {
    const { lineageId, uploadId } = await uploadOf(registry, events, {
      project: PROJECT,
      device: 'gw-resume',
      rows: ROWS,
    });
    const all = await completed(events, lineageId);
    expect(handler.failAt).toBeUndefined(); // the interruption did happen
    const seqs = all.flatMap((e) =>
      e.type === 'RowsStaged' || e.type === 'RowsAccepted' ? e.data.rows.map((r) => r.commit_seq) : [],
    );
    expect(seqs).toHaveLength(ROWS);
    expect(new Set(seqs).size).toBe(ROWS);
    const chunks = all
      .filter((e) => e.type === 'UploadChunkAppended')
      .map((e) => (e.data as { chunk: number }).chunk);
    expect(chunks).toEqual([...chunks.keys()]);
    expect(chunks.length).toBeGreaterThan(3);
    expect(all.filter((e) => e.type === 'UploadCompleted')).toHaveLength(1);
    // Acked only now, and the object is gone (its rows are events).
    const jsm = await jetstreamManager(nc);
    await waitFor(
      async () => {
        return (await ingressBacklog(jsm)) === 0;
      },
      { message: 'the finalize acked' },
    );
    await waitFor(
      async () => {
        const info = await store.info(uploadId);
        return info === null || info.deleted;
      },
      { message: 'the object deleted' },
    );
  } finally {
    await worker.stop();
  }
});

it('under registry coalescing, uploaded rows wait for the registry review like batch rows', async () => {
  const events = await JetStreamEventStore.create(nc);
  const handler = new LineageCommandHandler(events);
  const registry = await Registry.open(nc);
  const project = uuidv7();
  await registry.setPolicy(project, { schema_coalescing_mode: 'project' });
  const registries = new RegistryCommandHandler(await RegistryEventStore.create(nc));
  const worker = new IngressWorker({
    nc,
    handler,
    registry,
    registries,
    log: silentLogger(),
    uploads: store,
  });
  await worker.start();
  try {
    const { lineageId } = await uploadOf(registry, events, { project, device: 'gw-fleet', rows: 500 });
    const all = await completed(events, lineageId);
    const types = all.map((e) => e.type);
    expect(types).toContain('RegistryReviewAwaited');
    expect(types).not.toContain('SchemaReviewQueued');
    expect(types).not.toContain('RowsAccepted');
    const staged = all.flatMap((e) => (e.type === 'RowsStaged' ? e.data.rows : []));
    expect(staged).toHaveLength(500);
  } finally {
    await worker.stop();
  }
});
