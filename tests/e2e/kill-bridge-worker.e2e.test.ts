import mqtt from 'mqtt';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { uuidv7 } from 'uuidv7';
import { schemaHash } from '../../domain/protocol/fingerprint';
import { JetStreamEventStore } from '../../infra/nats/event-store';
import { Registry } from '../../infra/nats/registry';
import { startMosquitto, type MosquittoServer } from '../support/mosquitto';
import { startNats, type NatsServer } from '../support/nats';
import { rng } from '../support/prng';
import { type Managed, startProcess } from '../support/proc';
import { ROOT, TEST_PROJECT } from '../support/stack';
import { waitFor } from '../support/wait';

const KILLS_EACH = Number(process.env.SLUICE_KILLS ?? 10);
const MIN_BATCHES = 50;
const ROWS_PER_BATCH = 10;
const PUBLISH_GAP_MS = 50;
const READY = { bridge: 'bridge connected', worker: 'worker started' } as const;
const schema = {
  table_name: 'events',
  columns: [
    { name: 'id', decl_type_affinity: 'INTEGER' as const, pk_ordinal: 1, not_null: true },
    { name: 'body', decl_type_affinity: 'TEXT' as const, pk_ordinal: 0, not_null: false },
  ],
};

describe('kill -9 of the bridge and the worker under load', () => {
  let nats: NatsServer;
  let mosq: MosquittoServer;
  let cleanup: () => Promise<unknown> = async () => undefined;
  beforeAll(async () => {
    [nats, mosq] = await Promise.all([startNats(), startMosquitto({ persistence: true })]);
  });
  afterAll(async () => {
    await cleanup();
    await Promise.all([nats?.stop(), mosq?.stop()]);
  });

  it(`loses no batch and applies none twice (${KILLS_EACH} kills each)`, async () => {
    const seed = Number(process.env.SLUICE_SEED ?? Date.now() % 100_000);
    const random = rng(seed);
    const env = {
      ...process.env,
      SLUICE_NATS_URL: nats.url,
      SLUICE_MQTT_URL: mosq.url,
      SLUICE_PROJECT_ID: TEST_PROJECT,
      SLUICE_BRIDGE_CLIENT_ID: 'bridge-under-fire',
      // Mosquitto: skip the broker probe of `auto` (up to 3 s per bridge start, 11 starts here).
      SLUICE_BRIDGE_UPLINKS: 'shared',
      SLUICE_WORKER_ID: 'worker-under-fire',
      SLUICE_LOG_LEVEL: 'info',
    };
    const start = (role: 'bridge' | 'worker') => startProcess(join(ROOT, 'bin', 'sluice'), [role], { env });
    const procs: Record<'bridge' | 'worker', Managed> = { bridge: start('bridge'), worker: start('worker') };
    cleanup = () => Promise.all([procs.bridge.kill(), procs.worker.kill()]);
    // The bridge's persistent session must exist before devices publish: from then on the broker
    // queues uplinks for it while it is down.
    await waitFor(() => procs.bridge.output().includes('bridge connected'), {
      timeoutMs: 30_000,
      message: 'bridge subscribed',
    });

    const device = await mqtt.connectAsync(mosq.url, {
      clientId: 'dev-under-fire',
      clean: false,
      protocolVersion: 4,
    });
    const epoch = uuidv7();
    let sent = 0;
    let killsDone = false;
    const publishing = (async () => {
      for (let b = 0; !killsDone || b < MIN_BATCHES; b++) {
        const seqs = Array.from({ length: ROWS_PER_BATCH }, (_, i) => b * ROWS_PER_BATCH + i + 1);
        const body = {
          format_version: 1,
          capture_strategy: 'sqlite_row_batch_v1',
          batch_id: uuidv7(),
          journal_epoch: epoch,
          source_table: 'events',
          schema_hash: schemaHash(schema),
          ...(b === 0 ? { schema_columns: schema } : {}),
          first_commit_seq: seqs[0],
          last_commit_seq: seqs.at(-1),
          rows: seqs.map((s) => ({
            commit_seq: s,
            op: 'insert',
            pk: { id: s },
            row: { id: s, body: `row ${s}` },
          })),
        };
        await device.publishAsync('fire/dev-under-fire/sync/rows/batch', JSON.stringify(body), { qos: 1 });
        sent++;
        // Spread the load over the whole kill window.
        await new Promise((r) => setTimeout(r, PUBLISH_GAP_MS));
      }
    })();

    let kills = { bridge: 0, worker: 0 };
    while (kills.bridge < KILLS_EACH || kills.worker < KILLS_EACH) {
      const role =
        kills.bridge >= KILLS_EACH
          ? 'worker'
          : kills.worker >= KILLS_EACH
            ? 'bridge'
            : random() < 0.5
              ? 'bridge'
              : 'worker';
      // Let the role come up and get some work done, then kill it mid-flight.
      await waitFor(() => procs[role].output().includes(READY[role]), {
        timeoutMs: 30_000,
        message: `${role} ready`,
      });
      await new Promise((r) => setTimeout(r, random() * 400));
      await procs[role].kill();
      kills = { ...kills, [role]: kills[role] + 1 };
      procs[role] = start(role);
    }
    killsDone = true;
    await publishing;

    const nc = await connect({ servers: nats.url });
    const registry = await Registry.open(nc);
    const store = await JetStreamEventStore.create(nc);
    const dev = await registry.resolveDevice(TEST_PROJECT, 'fire', 'dev-under-fire', uuidv7());
    const { lineageId } = await registry.resolveLineage(dev.device_id, 'events', uuidv7());
    const total = sent * ROWS_PER_BATCH;
    const seqs = await waitFor(
      async () => {
        const { events } = await store.load(lineageId);
        const all = events.flatMap((e) =>
          e.type === 'RowsStaged' ? e.data.rows.map((r) => r.commit_seq) : [],
        );
        return all.length >= total ? all : undefined;
      },
      {
        timeoutMs: 60_000,
        message: () =>
          `all ${total} rows in the lineage (seed ${seed}; bridge: ${procs.bridge.output().slice(-800)}; worker: ${procs.worker.output().slice(-800)}; exit ${procs.worker.child.exitCode})`,
      },
    );
    expect(seqs).toHaveLength(total); // none applied twice
    expect(new Set(seqs).size).toBe(total);
    expect(Math.min(...seqs)).toBe(1);
    expect(Math.max(...seqs)).toBe(total); // none lost
    const registered = (await store.load(lineageId)).events.filter((e) => e.type === 'LineageRegistered');
    expect(registered).toHaveLength(1);

    await device.endAsync();
    await nc.close();
    await Promise.all([procs.bridge.stop(), procs.worker.stop()]);
  });
});
