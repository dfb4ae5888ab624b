import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { uuidv7 } from 'uuidv7';
import { lineageEvent as ev } from '../../tests/support/event-store-contract';
import { startNats, type NatsServer } from '../../tests/support/nats';
import { waitFor } from '../../tests/support/wait';
import { JetStreamEventStore } from './event-store';
import { STREAMS, subjects } from './names';
import { ensureStreams } from './streams';

// What every event store promises is in tests/contracts/; these are the JetStream adapter's own.

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
