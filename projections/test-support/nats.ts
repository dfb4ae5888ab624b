import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { JetStreamEventStore } from '../../infra/nats/event-store';
import { subjects } from '../../infra/nats/names';
import { ensureStreams } from '../../infra/nats/streams';
import { startNats, type NatsServer } from '../../tests/support/nats';

export type TestNats = Readonly<{
  server: NatsServer;
  nc: NatsConnection;
  events: JetStreamEventStore;
  /** Publish a rejection the way the bridge does; resolves to its stream sequence. */
  reject: (r: Record<string, unknown>) => Promise<number>;
  stop: () => Promise<void>;
}>;

export async function startTestNats(): Promise<TestNats> {
  const server = await startNats();
  const nc = await connect({ servers: server.url });
  await ensureStreams(await jetstreamManager(nc));
  const events = await JetStreamEventStore.create(nc);
  const js = jetstream(nc);
  return {
    server,
    nc,
    events,
    reject: async (r) => {
      const ack = await js.publish(subjects.rejected(String(r.device_key ?? 'dev')), JSON.stringify(r));
      return ack.seq;
    },
    stop: async () => {
      await nc.drain().catch(() => undefined);
      await server.stop();
    },
  };
}
