import { connect, type NatsConnection } from '@nats-io/transport-node';
import { type JetStreamManager, jetstreamManager } from '@nats-io/jetstream';
import { STREAMS } from '../../infra/nats/names';
import { ensureStreams, isStreamSettingError } from '../../infra/nats/streams';
import { startNats, type NatsServer } from '../support/nats';

const MIN_NS = 60 * 1_000_000_000;
let nats: NatsServer;
let nc: NatsConnection;
let jsm: JetStreamManager;
beforeAll(async () => {
  nats = await startNats();
  nc = await connect({ servers: nats.url });
  jsm = await jetstreamManager(nc);
});
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

const config = async (stream: string) => (await jsm.streams.info(stream)).config;

describe('ensureStreams on an existing single-node deployment', () => {
  it('keeps limits an operator raised, raises a given setting, and refuses to lower one', async () => {
    await ensureStreams(jsm);
    expect((await config(STREAMS.ingress)).duplicate_window).toBe(10 * MIN_NS);
    expect((await config(STREAMS.rejections)).max_age).toBe(30 * 24 * 60 * MIN_NS);

    // An operator lifts the rejections' age limit and caps the ingress' size by hand.
    await jsm.streams.update(STREAMS.rejections, { max_age: 0 });
    await jsm.streams.update(STREAMS.ingress, { max_bytes: 1 << 30 });
    await ensureStreams(jsm);
    expect((await config(STREAMS.rejections)).max_age).toBe(0);
    expect((await config(STREAMS.ingress)).max_bytes).toBe(1 << 30);

    await ensureStreams(jsm, { duplicateWindowMs: 20 * 60_000 });
    for (const s of [STREAMS.lineage, STREAMS.ingress, STREAMS.registry])
      expect((await config(s)).duplicate_window).toBe(20 * MIN_NS);
    // Absent again: the raised window stays.
    await ensureStreams(jsm);
    expect((await config(STREAMS.ingress)).duplicate_window).toBe(20 * MIN_NS);

    const err = await ensureStreams(jsm, { duplicateWindowMs: 5 * 60_000 }).catch((e: unknown) => e);
    expect(isStreamSettingError(err)).toBe(true);
    expect((err as Error).message).toContain(
      `STREAM_SETTING_LOWER: stream ${STREAMS.lineage} has duplicate_window 1200s; this role asks for 300s`,
    );
    for (const s of [STREAMS.lineage, STREAMS.ingress, STREAMS.registry])
      expect((await config(s)).duplicate_window).toBe(20 * MIN_NS);
  });
});
