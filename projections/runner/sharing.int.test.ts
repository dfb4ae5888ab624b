/**
 * Two projectors share the partitioned projections through leases: on a steady load each applies
 * about half of the row messages with no checkpoint conflicts between them; when one dies without
 * giving its leases back, the other takes every partition over, and the store ends up exactly as a
 * single projector folding the same stream leaves it.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { uuidv7 } from 'uuidv7';
import type { RowChange, WireValue } from '../../domain/protocol/contracts';
import type { SchemaColumns } from '../../domain/protocol/fingerprint';
import { waitFor } from '../../tests/support/wait';
import { dumpStore } from '../test-support/dump';
import { bindAll, TestLineage, upsert } from '../test-support/lineage';
import { startTestNats, type TestNats } from '../test-support/nats';
import { openTestStore, type TestStore } from '../test-support/stores';
import { createProjections } from '../registry';
import { devicePartition, PROJECTION_PARTITIONS } from './partitions';
import { type Projector, startProjector } from './projector';

const SCHEMA: SchemaColumns = {
  table_name: 'meter',
  columns: [
    { name: 'id', decl_type_affinity: 'INTEGER', pk_ordinal: 1, not_null: true },
    { name: 'v', decl_type_affinity: 'REAL', pk_ordinal: 0, not_null: false },
  ],
};
const DEVICES_PER_PARTITION = 2;

let nats: TestNats;
let store: TestStore;
let reference: TestStore;
beforeAll(async () => {
  nats = await startTestNats();
  store = await openTestStore('postgres');
  reference = await openTestStore('postgres');
});
afterAll(async () => {
  await store?.cleanup();
  await reference?.cleanup();
  await nats?.stop();
});

/** Device ids spread evenly: DEVICES_PER_PARTITION in every partition. */
function evenDeviceIds(): string[] {
  const per = new Map<number, string[]>();
  while (
    [...per.values()].reduce((n, ids) => n + ids.length, 0) <
    PROJECTION_PARTITIONS * DEVICES_PER_PARTITION
  ) {
    const id = uuidv7();
    const ids = per.get(devicePartition(id)) ?? [];
    if (ids.length < DEVICES_PER_PARTITION) per.set(devicePartition(id), [...ids, id]);
  }
  return [...per.values()].flat();
}

/** The projections run whole, each by one projector (lease group `projector-global`). */
const WHOLE = createProjections().filter((p) => !p.partitioned).length;

type Counted = {
  projector: Projector;
  nc: NatsConnection;
  applied: Map<string, number>;
  conflicts: number;
  owned: number;
  whole: number;
};

async function sharedProjector(memberId: string): Promise<Counted> {
  const nc = await connect({ servers: nats.server.url });
  const c = { nc, applied: new Map(), conflicts: 0, owned: 0, whole: 0 } as Counted;
  c.projector = await startProjector({
    nc,
    store: store.store,
    metrics: {
      applied: (p, n) => c.applied.set(p, (c.applied.get(p) ?? 0) + n),
      conflict: () => void c.conflicts++,
    },
    share: { memberId, onOwned: (group, n) => void (group === 'projector' ? (c.owned = n) : (c.whole = n)) },
  });
  return c;
}

let round = 0;
async function appendRows(lineages: readonly TestLineage[], batches: number): Promise<void> {
  round++;
  for (let b = 0; b < batches; b++) {
    for (const l of lineages) {
      const rows: RowChange[] = [0, 1, 2].map((i) =>
        upsert(round * 1_000 + b * 10 + i, { id: b * 3 + i, v: (round * 100 + b) as WireValue }),
      );
      await l.append(l.accepted('epoch', rows));
    }
  }
}

it('two projectors split the partitions, and one takes over when the other dies', async () => {
  const project = uuidv7();
  const lineages: TestLineage[] = [];
  for (const [i, device_id] of evenDeviceIds().entries()) {
    const l = new TestLineage(nats.events, {
      project_id: project,
      device_id,
      device_name: `meter-${i}`,
      source_table: SCHEMA.table_name,
    });
    const review = uuidv7();
    await l.append(l.registered(), l.observed(SCHEMA), l.queued(review, SCHEMA), l.paused('schema_review'));
    await l.append(
      l.claimed(review),
      l.approved(review, SCHEMA, bindAll(SCHEMA)),
      l.resumed('schema_review'),
    );
    lineages.push(l);
  }

  const a = await sharedProjector('proj-a');
  const b = await sharedProjector('proj-b');
  try {
    // Within a few lease rounds each holds half of the partitions.
    await waitFor(() => a.owned === 8 && b.owned === 8, {
      timeoutMs: 30_000,
      message: 'two projectors holding 8 partitions each',
    });
    await Promise.all([a.projector.waitForCaughtUp(), b.projector.waitForCaughtUp()]);
    for (const c of [a, b]) {
      c.applied.clear();
      c.conflicts = 0;
    }

    // Steady load: every lineage gets the same number of messages.
    await appendRows(lineages, 6);
    await Promise.all([
      a.projector.waitForCaughtUp(undefined, { timeoutMs: 60_000 }),
      b.projector.waitForCaughtUp(undefined, { timeoutMs: 60_000 }),
    ]);
    const offered = lineages.length * 6;
    for (const name of ['staged_rows', 'cloud_rows']) {
      const [na, nb] = [a.applied.get(name) ?? 0, b.applied.get(name) ?? 0];
      // Each message applied by exactly one of them, each applying at least 40 %.
      expect(na + nb).toBe(offered);
      expect(na).toBeGreaterThanOrEqual(0.4 * offered);
      expect(nb).toBeGreaterThanOrEqual(0.4 * offered);
    }
    expect(a.conflicts + b.conflicts).toBe(0);

    // `a` dies: its connection goes, its leases are never given back.
    await a.nc.close();
    await appendRows(lineages, 3);
    await waitFor(() => b.owned === PROJECTION_PARTITIONS && b.whole === WHOLE, {
      timeoutMs: 30_000,
      message: 'the survivor holding every partition and whole projection',
    });
    await b.projector.waitForCaughtUp(undefined, { timeoutMs: 60_000 });
  } finally {
    await b.projector.stop();
    await b.nc.close();
    await a.projector.stop().catch(() => undefined);
  }

  // Nothing lost or doubled: the same tables as one projector folding the stream alone.
  const single = await startProjector({ nc: nats.nc, store: reference.store });
  try {
    await single.waitForCaughtUp(undefined, { timeoutMs: 60_000 });
  } finally {
    await single.stop();
  }
  const [shared, alone] = await Promise.all([dumpStore(store.store), dumpStore(reference.store)]);
  const mirrors = Object.keys(alone).filter((t) => /^edge_mirror_[0-9a-f]{8}_meter/.test(t));
  expect(mirrors).toHaveLength(lineages.length);
  expect(shared).toEqual(alone);
});
