import { schemaHash } from '../domain/protocol/fingerprint';
import { DEFAULT_POLICY } from '../domain/policy/policy';
import type { LineageCommand } from '../domain/lineage/decide';
import type { LineageEvent, StoredEvent } from '../domain/lineage/events';
import { isDomainError } from '../domain/shared/errors';
import type { EventStore, LoadedStream } from '../domain/shared/ports';
import { InMemoryEventStore } from '../infra/memory/event-store';
import { SNAPSHOT_SCHEMA, type Snapshot, type SnapshotStore } from '../infra/nats/snapshots';
import { LineageCache, LineageCommandHandler, SNAPSHOT_EVERY } from './handler';

const L = '0190a000-0000-7000-8000-0000000000aa';
const EPOCH = '0190a000-0000-7000-8000-0000000000e1';
const schema = {
  table_name: 't',
  columns: [{ name: 'id', decl_type_affinity: 'INTEGER' as const, pk_ordinal: 1, not_null: true }],
};
let ids = 0;
const id = () => `0190a000-0000-7000-8000-${String(++ids).padStart(12, '0')}`;
const ingest = (seq: number): LineageCommand => ({
  type: 'IngestRowBatch',
  data: {
    project_id: 'p',
    device_id: 'd',
    device_name: 'gw',
    new_lineage_id: L,
    new_review_id: id(),
    new_control_id: id(),
    new_replay_id: id(),
    now: '2026-11-22T00:00:00Z',
    policy: DEFAULT_POLICY,
    batch: {
      format_version: 1,
      capture_strategy: 'sqlite_row_batch_v1',
      batch_id: id(),
      journal_epoch: EPOCH,
      source_table: 't',
      schema_hash: schemaHash(schema),
      schema_columns: schema,
      first_commit_seq: seq,
      last_commit_seq: seq,
      rows: [{ commit_seq: seq, op: 'insert', pk: { id: seq }, row: { id: seq } }],
    },
  },
});

class CountingStore implements EventStore<StoredEvent<LineageEvent>> {
  loads: number[] = [];
  constructor(readonly inner: EventStore<StoredEvent<LineageEvent>>) {}
  load(lineageId: string, from?: number): Promise<LoadedStream<StoredEvent<LineageEvent>>> {
    this.loads.push(from ?? 0);
    return this.inner.load(lineageId, from);
  }
  append(l: string, e: readonly StoredEvent<LineageEvent>[], v: number, d: string) {
    return this.inner.append(l, e, v, d);
  }
}

class MapSnapshots implements SnapshotStore {
  readonly map = new Map<string, Snapshot>();
  async get(k: string) {
    return this.map.get(k);
  }
  async put(k: string, s: Snapshot) {
    this.map.set(k, JSON.parse(JSON.stringify(s)) as Snapshot);
  }
}

describe('lineage command handler', () => {
  it('snapshots a busy lineage so a cold handler folds only the tail', async () => {
    const store = new InMemoryEventStore<StoredEvent<LineageEvent>>();
    const snapshots = new MapSnapshots();
    const hot = new LineageCommandHandler(store, { cache: new LineageCache(), snapshots });
    for (let seq = 1; seq <= SNAPSHOT_EVERY + 20; seq++)
      await hot.execute(L, ingest(seq), { decision_id: id() });
    const snap = snapshots.map.get(L);
    expect(snap).toBeDefined();
    const counting = new CountingStore(store);
    const cold = new LineageCommandHandler(counting, { cache: new LineageCache(), snapshots });
    const loaded = await cold.load(L);
    expect(counting.loads).toEqual([snap!.version]);
    expect(loaded.state).toEqual((await new LineageCommandHandler(store).load(L)).state);
  });

  it('ignores a snapshot of another schema and folds the lineage from its events', async () => {
    const store = new InMemoryEventStore<StoredEvent<LineageEvent>>();
    const snapshots = new MapSnapshots();
    const hot = new LineageCommandHandler(store, { cache: new LineageCache(), snapshots });
    for (let seq = 1; seq <= SNAPSHOT_EVERY + 20; seq++)
      await hot.execute(L, ingest(seq), { decision_id: id() });
    const snap = snapshots.map.get(L)!;
    expect(snap.schema).toBe(SNAPSHOT_SCHEMA);
    // A snapshot written by an older release: its state lacks fields this one reads.
    snapshots.map.set(L, { ...snap, schema: SNAPSHOT_SCHEMA - 1, state: { status: 'unregistered' } });
    const counting = new CountingStore(store);
    const cold = new LineageCommandHandler(counting, { cache: new LineageCache(), snapshots });
    const loaded = await cold.load(L);
    expect(counting.loads).toEqual([0]);
    expect(loaded.state).toEqual((await new LineageCommandHandler(store).load(L)).state);
  });

  it('re-decides on a conflict with another writer instead of losing either decision', async () => {
    const store = new InMemoryEventStore<StoredEvent<LineageEvent>>();
    const a = new LineageCommandHandler(store);
    const b = new LineageCommandHandler(store);
    await a.execute(L, ingest(1), { decision_id: id() });
    await b.load(L);
    await a.execute(L, ingest(2), { decision_id: id() }); // b's cache is now stale
    const r = await b.execute(L, ingest(3), { decision_id: id() });
    expect(r.events.map((e) => e.type)).toEqual(['RowsStaged']);
    const state = (await new LineageCommandHandler(store).load(L)).state;
    expect(state.status === 'registered' && state.staged_rows).toBe(3);
  });

  it("stamps a decision's events with the time its command carries, else the handler's clock", async () => {
    const h = new LineageCommandHandler(new InMemoryEventStore<StoredEvent<LineageEvent>>(), {
      clock: () => new Date('2030-01-01T00:00:00.000Z'),
    });
    const now = '2026-11-22T00:00:00.000Z';
    const first = await h.execute(L, ingest(1), { decision_id: id(), now });
    expect(new Set(first.events.map((e) => e.occurred_at))).toEqual(new Set([now]));
    const second = await h.execute(L, ingest(2), { decision_id: id() });
    expect(second.events.map((e) => e.occurred_at)).toEqual(['2030-01-01T00:00:00.000Z']);
  });

  it('keeps operators inside their project', async () => {
    const store = new InMemoryEventStore<StoredEvent<LineageEvent>>();
    const h = new LineageCommandHandler(store);
    await h.execute(L, ingest(1), { decision_id: id() });
    const err = await h
      .execute(
        L,
        { type: 'DeleteLineage', data: { reason: 'x' } },
        { decision_id: id(), project_id: 'other' },
      )
      .catch((e: unknown) => e);
    expect(isDomainError(err) && err.code).toBe('not_found');
  });

  it('logs the decisions an operator looks for, not every batch', async () => {
    const lines: { obj: Record<string, unknown>; msg: string }[] = [];
    const h = new LineageCommandHandler(new InMemoryEventStore<StoredEvent<LineageEvent>>(), {
      log: { info: (obj, msg) => void lines.push({ obj, msg }) },
    });
    await h.execute(L, ingest(1), { decision_id: id() });
    const first = lines.map((l) => l.obj.event);
    expect(first).toEqual(expect.arrayContaining(['LineageRegistered', 'SchemaReviewQueued']));
    expect(first).not.toContain('RowsStaged');
    expect(lines[0]!.obj).toMatchObject({
      lineage_id: L,
      device: 'gw',
      table: 't',
      command: 'IngestRowBatch',
    });
    lines.length = 0;
    await h.execute(L, ingest(2), { decision_id: id() });
    expect(lines).toEqual([]); // one more batch: nothing worth a line
  });

  it('decides several batches of a lineage as one append, each on the state the ones before left', async () => {
    const together = new InMemoryEventStore<StoredEvent<LineageEvent>>();
    const alone = new InMemoryEventStore<StoredEvent<LineageEvent>>();
    const batches = [1, 2, 3].map((seq) => ingest(seq));
    const conflicting: LineageCommand = {
      type: 'IngestRowBatch',
      data: { ...(batches[1]!.data as Extract<LineageCommand, { type: 'IngestRowBatch' }>['data']) },
    };
    const meta = () => ({ decision_id: id() });
    // The second one comes again with other content under its batch id: refused, the rest go on.
    const digest = (c: LineageCommand, d: string): LineageCommand =>
      ({ ...c, data: { ...c.data, payload_digest: d } }) as LineageCommand;
    const items = [
      { command: digest(batches[0]!, 'a'), meta: meta() },
      { command: digest(batches[1]!, 'b'), meta: meta() },
      { command: digest(conflicting, 'other'), meta: meta() },
      { command: digest(batches[2]!, 'c'), meta: meta() },
    ];
    const r = await new LineageCommandHandler(together).executeAll(L, items);
    expect(r.outcomes.map((o) => (o.ok ? 'ok' : o.error.code))).toEqual([
      'ok',
      'ok',
      'batch_id_conflict',
      'ok',
    ]);
    const one = new LineageCommandHandler(alone);
    for (const i of [0, 1, 3]) await one.execute(L, items[i]!.command, items[i]!.meta);
    expect((await together.load(L)).version).toBe(1); // one append
    const a = (await new LineageCommandHandler(together).load(L)).state;
    const b = (await new LineageCommandHandler(alone).load(L)).state;
    expect(a.status === 'registered' && a.staged_rows).toBe(3);
    expect(a).toEqual(b);
    // Delivered again, grouped otherwise: nothing is taken in twice.
    const again = await new LineageCommandHandler(together).executeAll(L, [items[3]!, items[0]!]);
    expect(again.outcomes.every((o) => o.ok && o.events.length === 0)).toBe(true);
  });
});
