import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { waitFor } from '../../tests/support/wait';
import { connect } from '@nats-io/transport-node';
import { uuidv7 } from 'uuidv7';
import type { LineageEvent, StoredEvent } from '../../domain/lineage/events';
import type { EventStore } from '../../domain/shared/ports';
import { JetStreamEventStore } from '../../infra/nats/event-store';
import { subjects } from '../../infra/nats/names';
import type { ReadStore } from '../store/open';
import { dumpStore } from '../test-support/dump';
import { appendHistory } from '../test-support/history';
import { RecordingCommands, TestLineage } from '../test-support/lineage';
import { startTestNats, type TestNats } from '../test-support/nats';
import { DIALECTS, openTestStore, type TestStore } from '../test-support/stores';
import { readCheckpoint } from './checkpoints';
import { PROJECTION_NAMES } from '../registry';
import { startProjector } from './projector';
import type { Projection } from './types';

let nats: TestNats;
let garbagePublished = 0;
beforeAll(async () => {
  nats = await startTestNats();
});
afterAll(async () => {
  await nats?.stop();
});

/**
 * A projection that records every event it applies as one row (no key: applying twice would
 * show as two rows). `failures` injects errors after its write, to prove the rollback.
 */
type Gate = { seq: number; reached: () => void; release: Promise<void> };

function probe(version: number, failures = new Map<number, number>(), gate?: Gate): Projection {
  return {
    name: 'probe',
    version,
    stream: 'SLUICE_LINEAGE',
    handles: ['LineageRegistered', 'RowsAccepted', 'LineageDeleted'],
    async apply(tx, event, ctx) {
      const p = ctx.dialect.placeholder;
      await ctx.dialect.exec(
        tx,
        `INSERT INTO probe_events (seq, idx, type) VALUES (${p(1)}, ${p(2)}, ${p(3)})`,
        [ctx.seq, ctx.index, event.type],
      );
      if (gate && ctx.seq === gate.seq) {
        gate.reached();
        await gate.release;
      }
      const left = failures.get(ctx.seq) ?? 0;
      if (left > 0) {
        failures.set(ctx.seq, left - 1);
        throw new Error(`injected failure at ${ctx.seq}`);
      }
    },
    async truncate(tx, dialect) {
      await dialect.exec(tx, 'DELETE FROM probe_events', []);
    },
  };
}

async function probeRows(store: ReadStore): Promise<{ seq: number; idx: number; n: number }[]> {
  const rows = await store.dialect.exec(
    store.db,
    'SELECT seq, idx, COUNT(*) AS n FROM probe_events GROUP BY seq, idx ORDER BY seq, idx',
    [],
  );
  return rows.map((r) => ({ seq: Number(r.seq), idx: Number(r.idx), n: Number(r.n) }));
}

/** Appends `n` decisions: register, n-2 accepted batches, delete. Returns [first seq, last seq]. */
async function appendLineage(
  n: number,
  events: EventStore<StoredEvent<LineageEvent>> = nats.events,
): Promise<[number, number]> {
  const l = new TestLineage(events, {
    project_id: uuidv7(),
    device_id: uuidv7(),
    device_name: 'probe',
    source_table: 't',
  });
  const first = await l.append(l.registered(), l.paused('schema_review'));
  for (let i = 0; i < n - 2; i++) {
    await l.append(
      l.accepted(uuidv7(), [{ commit_seq: i + 1, op: 'insert', pk: { id: i }, row: { id: i } }]),
    );
  }
  const last = await l.append(l.deleted());
  return [first, last];
}

describe.each(DIALECTS)('projection runner (%s)', (kind) => {
  let t: TestStore;
  beforeAll(async () => {
    t = await openTestStore(kind);
    await t.store.dialect.exec(
      t.store.db,
      'CREATE TABLE probe_events (seq bigint, idx integer, type text)',
      [],
    );
  });
  afterAll(async () => {
    await t?.cleanup();
  });
  beforeEach(async () => {
    await t.store.dialect.exec(t.store.db, 'DELETE FROM probe_events', []);
    await t.store.db.deleteFrom('projection_checkpoints').execute();
  });

  it('rolls a failing batch back with its checkpoint and retries it: every event applied once', async () => {
    const [first, last] = await appendLineage(30);
    const failures = new Map([
      [first + 5, 2],
      [first + 17, 1],
    ]);
    const projector = await startProjector({
      nc: nats.nc,
      store: t.store,
      projections: [probe(1, failures)],
      limits: { maxMessages: 4 },
    });
    try {
      await projector.waitForCaughtUp(last);
      expect([...failures.values()]).toEqual([0, 0]);
      const rows = await probeRows(t.store);
      const mine = rows.filter((r) => r.seq >= first);
      // 1 registration (the pause is not handled) + 28 accepted + 1 deleted, each exactly once.
      expect(mine).toHaveLength(30);
      expect(mine.every((r) => r.n === 1 && r.idx === 0)).toBe(true);
      expect(rows.every((r) => r.n === 1)).toBe(true);
      const [status] = await projector.status();
      expect(status).toMatchObject({
        name: 'probe',
        checkpoint: last,
        lag: 0,
        state: 'live',
        last_error: null,
      });
      expect(status!.retries).toBeGreaterThanOrEqual(3);
    } finally {
      await projector.stop();
    }
  });

  it('restarts after a crash mid-stream without applying anything twice', async () => {
    const [, last] = await appendLineage(120);
    const crashing = t.reopen();
    let reached = () => {};
    let release = () => {};
    const gate: Gate = {
      seq: last - 50,
      reached: () => reached(),
      release: new Promise<void>((r) => (release = r)),
    };
    const inFlight = new Promise<void>((r) => (reached = r));
    const a = await startProjector({
      nc: nats.nc,
      store: crashing,
      projections: [probe(1, new Map(), gate)],
      limits: { maxMessages: 3 },
    });
    await inFlight;
    // The process dies in the middle of a transaction: its connection goes away.
    if (kind === 'postgres') {
      await t.store.dialect.exec(
        t.store.db,
        'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()',
        [],
      );
    } else {
      await crashing.close();
    }
    const stopped = a.stop();
    release();
    await stopped;
    const stoppedAt = (await readCheckpoint(t.store.db, 'probe'))!.position;
    expect(stoppedAt).toBeLessThan(last - 50);
    expect(stoppedAt).toBeGreaterThanOrEqual(last - 53);

    const b = await startProjector({ nc: nats.nc, store: t.store, projections: [probe(1)] });
    try {
      await b.waitForCaughtUp(last);
      const rows = await probeRows(t.store);
      expect(rows.every((r) => r.n === 1)).toBe(true);
      const events = rows.filter((r) => r.seq > last - 120);
      expect(events).toHaveLength(120);
    } finally {
      await b.stop();
    }
  });

  it('lets two projectors of one projection share a store without applying anything twice', async () => {
    const [, last] = await appendLineage(80);
    const other = t.reopen();
    const [a, b] = await Promise.all([
      startProjector({ nc: nats.nc, store: t.store, projections: [probe(1)], limits: { maxMessages: 4 } }),
      startProjector({ nc: nats.nc, store: other, projections: [probe(1)], limits: { maxMessages: 3 } }),
    ]);
    try {
      await Promise.all([a.waitForCaughtUp(last), b.waitForCaughtUp(last)]);
      const rows = await probeRows(t.store);
      expect(rows.every((r) => r.n === 1)).toBe(true);
      expect(rows.filter((r) => r.seq > last - 80)).toHaveLength(80);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it('rebuilds a projection automatically when its version changes', async () => {
    const [, last] = await appendLineage(10);
    const v1 = await startProjector({ nc: nats.nc, store: t.store, projections: [probe(1)] });
    await v1.waitForCaughtUp(last);
    await v1.stop();
    const before = await probeRows(t.store);
    const v2 = await startProjector({ nc: nats.nc, store: t.store, projections: [probe(2)] });
    try {
      await v2.waitForCaughtUp(last);
      expect(await probeRows(t.store)).toEqual(before);
      expect(await readCheckpoint(t.store.db, 'probe')).toEqual({ version: 2, position: last });
    } finally {
      await v2.stop();
    }
  });

  it('refuses to fold onto a stream that is behind the store, and rebuilds when told to', async () => {
    const [, last] = await appendLineage(3);
    await t.store.dialect.exec(
      t.store.db,
      `INSERT INTO probe_events (seq, idx, type) VALUES (1, 0, 'kept')`,
      [],
    );
    await t.store.db
      .insertInto('projection_checkpoints')
      .values({ name: 'probe', version: 1, position: last + 1_000, updated_at: '' })
      .execute();
    const projector = await startProjector({ nc: nats.nc, store: t.store, projections: [probe(1)] });
    try {
      const [status] = await projector.status();
      expect(status).toMatchObject({ state: 'blocked', checkpoint: last + 1_000 });
      expect(status!.last_error).toMatch(/was the stream recreated\? Nothing was changed/);
      await expect(projector.waitForCaughtUp(last, { timeoutMs: 1_000 })).rejects.toThrow(/blocked/);
      expect(await probeRows(t.store)).toEqual([{ seq: 1, idx: 0, n: 1 }]);
      await projector.rebuild('probe');
      expect((await projector.status())[0]).toMatchObject({
        state: 'live',
        checkpoint: last,
        last_error: null,
      });
      expect((await probeRows(t.store)).every((r) => r.n === 1)).toBe(true);
    } finally {
      await projector.stop();
    }
  });

  it('ignores event types it does not handle and skips undecodable messages, loudly', async () => {
    const l = new TestLineage(nats.events, {
      project_id: uuidv7(),
      device_id: uuidv7(),
      device_name: 'x',
      source_table: 't',
    });
    await l.append(l.registered());
    // An event type from the future (e.g. controls) in the middle of a decision.
    const future = { type: 'SomethingNewHappened', data: { id: uuidv7() } } as unknown as Parameters<
      typeof l.append
    >[0];
    await l.append(future, l.deleted());
    const garbage = await jetstream(nats.nc).publish(subjects.lineage(uuidv7()), 'not json');
    garbagePublished++;
    const projector = await startProjector({ nc: nats.nc, store: t.store, projections: [probe(1)] });
    try {
      await projector.waitForCaughtUp(garbage.seq);
      const rows = (await probeRows(t.store)).filter((r) => r.seq > garbage.seq - 3);
      expect(rows).toEqual([
        { seq: garbage.seq - 2, idx: 0, n: 1 },
        { seq: garbage.seq - 1, idx: 1, n: 1 },
      ]);
      const [status] = await projector.status();
      expect(status).toMatchObject({ checkpoint: garbage.seq, skipped_messages: garbagePublished });
    } finally {
      await projector.stop();
    }
  });
});

describe.each(DIALECTS)('rebuild of the real projections (%s)', (kind) => {
  let live: TestStore;
  let fresh: TestStore;
  beforeAll(async () => {
    [live, fresh] = await Promise.all([openTestStore(kind), openTestStore(kind)]);
  });
  afterAll(async () => {
    await live?.cleanup();
    await fresh?.cleanup();
  });

  it('reproduces byte-identical tables, also while events keep arriving', async () => {
    const project = uuidv7();
    await appendHistory(nats, project, 1);
    const commands = new RecordingCommands();
    const projector = await startProjector({ nc: nats.nc, store: live.store, commands });
    try {
      await projector.waitForCaughtUp();
      const before = await dumpStore(live.store);
      expect(Object.keys(before).some((n) => /^edge_mirror_[0-9a-f]{8}_device_state$/.test(n))).toBe(true);
      expect(Object.keys(before).some((n) => n.startsWith('edge_ts_') && n.endsWith('_temps'))).toBe(true);
      expect(before.edge_rejections!.length).toBeGreaterThan(0);

      // Rebuild everything with nothing new: identical, and no CompleteReplay re-sent for
      // replays the domain already completed (they are all completed in this history).
      const progress: number[] = [];
      for (const name of PROJECTION_NAMES) {
        await projector.rebuild(name, (p) => progress.push(p.position));
      }
      expect(progress.length).toBeGreaterThan(6);
      expect(await dumpStore(live.store)).toEqual(before);
      const sentBefore = commands.sent.length;

      // Rebuild while new events are appended: nothing appended meanwhile is skipped.
      const appending = appendHistory(nats, project, 2);
      await Promise.all([projector.rebuild('mirror'), projector.rebuild('lineages'), appending]);
      await projector.waitForCaughtUp();
      const reference = await startProjector({ nc: nats.nc, store: fresh.store });
      await reference.waitForCaughtUp();
      await reference.stop();
      expect(await dumpStore(live.store)).toEqual(await dumpStore(fresh.store));
      // The telemetry replay of round 2 was never completed: sent once, live or after the rebuild.
      expect(commands.sent.length).toBeGreaterThanOrEqual(sentBefore);
    } finally {
      await projector.stop();
    }
  });

  it('lets another process rebuild a projection while the service keeps running', async () => {
    const project = uuidv7();
    const service = await startProjector({ nc: nats.nc, store: live.store });
    const cliStore = live.reopen();
    try {
      await service.waitForCaughtUp();
      // `sluice projections status|rebuild`: a projector that runs nothing by itself.
      const cli = await startProjector({ nc: nats.nc, store: cliStore, only: [] });
      const status = await cli.status();
      expect(status.map((s) => [s.name, s.state, s.lag])).toEqual(
        PROJECTION_NAMES.map((n) => [n, 'idle', 0]),
      );
      const appending = appendHistory(nats, project, 3);
      await cli.rebuild('mirror');
      await cli.rebuild('lineages');
      await appending;
      await cli.stop();
      await service.waitForCaughtUp();
      const reference = await startProjector({ nc: nats.nc, store: fresh.store });
      await reference.waitForCaughtUp();
      await reference.stop();
      expect(await dumpStore(live.store)).toEqual(await dumpStore(fresh.store));
    } finally {
      await service.stop();
    }
  });
});

describe('projector and a NATS restart', () => {
  let t: TestStore;
  beforeAll(async () => {
    t = await openTestStore('sqlite');
    await t.store.dialect.exec(
      t.store.db,
      'CREATE TABLE probe_events (seq bigint, idx integer, type text)',
      [],
    );
  });
  afterAll(async () => {
    await t?.cleanup();
  });

  it('keeps consuming after the server comes back', async () => {
    const nc = await connect({ servers: nats.server.url, reconnectTimeWait: 100 });
    const events = await JetStreamEventStore.create(nc);
    const projector = await startProjector({ nc, store: t.store, projections: [probe(1)] });
    try {
      const [, before] = await appendLineage(5, events);
      await projector.waitForCaughtUp(before);
      const jsm = await jetstreamManager(nc, { timeout: 250 });
      await nats.server.restart();
      await waitFor(async () => (await jsm.streams.info('SLUICE_LINEAGE')).state.last_seq >= before, {
        message: 'JetStream back after the restart',
      });
      const [, after] = await appendLineage(5, events);
      await projector.waitForCaughtUp(after, { timeoutMs: 30_000 });
      const rows = await probeRows(t.store);
      expect(rows.every((r) => r.n === 1)).toBe(true);
      expect(rows.at(-1)!.seq).toBe(after);
    } finally {
      await projector.stop();
      await nc.close();
    }
  });
});
