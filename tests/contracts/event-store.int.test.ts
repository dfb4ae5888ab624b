import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { JetStreamEventStore } from '../../infra/nats/event-store';
import { RegistryEventStore } from '../../infra/nats/registry-events';
import { ensureStreams } from '../../infra/nats/streams';
import { eventStoreContract, lineageEvent, registryEvent } from '../support/event-store-contract';
import { startNats, type NatsServer } from '../support/nats';

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

eventStoreContract('JetStream lineages', { make: () => JetStreamEventStore.create(nc), event: lineageEvent });
eventStoreContract('JetStream registry entries', {
  make: () => RegistryEventStore.create(nc),
  event: registryEvent,
});
