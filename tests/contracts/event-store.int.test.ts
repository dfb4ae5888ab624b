import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { uuidv7 } from 'uuidv7';
import type { LineageEvent, StoredEvent } from '../../domain/lineage/events';
import { type EventStore, isConcurrencyError } from '../../domain/shared/ports';
import { InMemoryEventStore } from '../../infra/memory/event-store';
import { JetStreamEventStore } from '../../infra/nats/event-store';
import { STREAMS, subjects } from '../../infra/nats/names';
import { ensureStreams } from '../../infra/nats/streams';
import { startNats, type NatsServer } from '../support/nats';
import { waitFor } from '../support/wait';

const ev = (reason: string): StoredEvent<LineageEvent> => ({
  type: 'LineageDeleted',
  data: { reason },
  id: uuidv7(),
  occurred_at: new Date().toISOString(),
  metadata: { causation_id: 'c', correlation_id: 'c' },
});

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

const adapters: [string, () => Promise<EventStore>][] = [
  ['in-memory', async () => new InMemoryEventStore()],
  ['JetStream', async () => JetStreamEventStore.create(nc)],
];

describe.each(adapters)('event store contract: %s', (_name, make) => {
  let store: EventStore;
  beforeEach(async () => {
    store = await make();
  });

  it('starts empty at version 0 and appends with expected version 0', async () => {
    const id = uuidv7();
    expect(await store.load(id)).toEqual({ events: [], version: 0 });
    const r = await store.append(id, [ev('a'), ev('b')], 0, uuidv7());
    expect(r.duplicate).toBe(false);
    const loaded = await store.load(id);
    expect(loaded.version).toBe(r.version);
    expect(loaded.events.map((e) => (e.type === 'LineageDeleted' ? e.data.reason : ''))).toEqual(['a', 'b']);
  });

  it('rejects a stale expected version with ConcurrencyError', async () => {
    const id = uuidv7();
    const first = await store.append(id, [ev('a')], 0, uuidv7());
    await store.append(id, [ev('b')], first.version, uuidv7());
    const err = await store.append(id, [ev('c')], first.version, uuidv7()).catch((e: unknown) => e);
    expect(isConcurrencyError(err)).toBe(true);
    const err0 = await store.append(id, [ev('c')], 0, uuidv7()).catch((e: unknown) => e);
    expect(isConcurrencyError(err0)).toBe(true);
  });

  it('treats a retried append (same decision id, ack lost) as already done', async () => {
    const id = uuidv7();
    const decision = uuidv7();
    const first = await store.append(id, [ev('a')], 0, decision);
    const again = await store.append(id, [ev('a')], 0, decision);
    expect(again).toEqual({ version: first.version, duplicate: true });
    expect((await store.load(id)).events).toHaveLength(1);
  });

  it('scopes decision ids to their lineage', async () => {
    const decision = uuidv7();
    const a = await store.append(uuidv7(), [ev('a')], 0, decision);
    const b = await store.append(uuidv7(), [ev('b')], 0, decision);
    expect(a.duplicate).toBe(false);
    expect(b.duplicate).toBe(false);
  });

  it('loads from a version onward', async () => {
    const id = uuidv7();
    const a = await store.append(id, [ev('a')], 0, uuidv7());
    const b = await store.append(id, [ev('b')], a.version, uuidv7());
    const tail = await store.load(id, a.version);
    expect(tail.version).toBe(b.version);
    expect(tail.events).toHaveLength(1);
  });

  it('keeps lineages apart', async () => {
    const x = uuidv7();
    const y = uuidv7();
    await store.append(x, [ev('x')], 0, uuidv7());
    await store.append(y, [ev('y1'), ev('y2')], 0, uuidv7());
    expect((await store.load(x)).events).toHaveLength(1);
    expect((await store.load(y)).events).toHaveLength(2);
  });
});

describe('JetStream event stream', () => {
  it('denies deleting and purging events', async () => {
    const jsm = await jetstreamManager(nc);
    const id = uuidv7();
    const store = await JetStreamEventStore.create(nc);
    const r = await store.append(id, [ev('a')], 0, uuidv7());
    await expect(jsm.streams.deleteMessage(STREAMS.lineage, r.version)).rejects.toThrow();
    await expect(jsm.streams.purge(STREAMS.lineage)).rejects.toThrow();
    const js = jetstream(nc);
    expect((await js.publish(subjects.lineage(uuidv7()), new Uint8Array([123, 125]))).seq).toBeGreaterThan(
      r.version,
    );
  });
});

describe('JetStream history reads', () => {
  it('read a lineage interleaved with others by direct gets, creating no consumer', async () => {
    const jsm = await jetstreamManager(nc);
    const store = await JetStreamEventStore.create(nc);
    const [x, y] = [uuidv7(), uuidv7()];
    let vx = 0;
    let vy = 0;
    for (let i = 0; i < 30; i++) {
      vx = (await store.append(x, [ev(`x${i}`)], vx, uuidv7())).version;
      vy = (await store.append(y, [ev(`y${i}`)], vy, uuidv7())).version;
    }
    // Every consumer JetStream creates on the stream is announced on this advisory subject.
    const created = nc.subscribe(`$JS.EVENT.ADVISORY.CONSUMER.CREATED.${STREAMS.lineage}.>`);
    let creations = 0;
    void (async () => {
      for await (const _ of created) creations++;
    })();
    await nc.flush();
    const loaded = await store.load(x);
    const tail = await store.readCommits(y, { fromVersion: vy - 6, limit: 2 });
    expect(loaded.events.map((e) => (e.type === 'LineageDeleted' ? e.data.reason : ''))).toEqual(
      Array.from({ length: 30 }, (_, i) => `x${i}`),
    );
    expect(loaded.version).toBe(vx);
    expect(tail.map((c) => c.events[0]?.type === 'LineageDeleted' && c.events[0].data.reason)).toEqual([
      'y27',
      'y28',
    ]);
    // A canary consumer proves the advisory is heard before counting none for the reads.
    await jsm.consumers.add(STREAMS.lineage, { inactive_threshold: 5_000_000_000 });
    await waitFor(() => creations > 0, { message: 'the consumer advisory' });
    created.unsubscribe();
    expect(creations).toBe(1);
  });
});
