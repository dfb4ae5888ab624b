/**
 * The ingress backlog counts what the partition consumers still have to deliver or see acked, not
 * the stream's message count: a nats-server killed -9 can keep messages in the work queue whose
 * acks its consumer already recorded, and those are never delivered again. Here such messages are
 * stood in for by messages on a partition number no consumer filters.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { STREAMS } from '../infra/nats/names';
import { INGRESS_PARTITIONS } from '../infra/nats/partitions';
import { ensureStreams } from '../infra/nats/streams';
import { startNats, type NatsServer } from '../tests/support/nats';
import { ingressBacklog, ingressConsumerConfig, workerConsumer } from './ingress-partitions';

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

test('the backlog is what the partition consumers have not delivered or not seen acked', async () => {
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  const publish = (partition: number, n: number) =>
    Promise.all(
      Array.from({ length: n }, (_, i) => js.publish(`edge.ingress.${partition}.rows.dev${i}`, '{}')),
    );
  const streamMessages = async () => (await jsm.streams.info(STREAMS.ingress)).state.messages;

  // No worker has started: every message in the stream is waiting.
  await publish(0, 2);
  expect(await ingressBacklog(jsm)).toBe(2);
  for (let p = 0; p < INGRESS_PARTITIONS; p++)
    await jsm.consumers.add(STREAMS.ingress, ingressConsumerConfig(p));
  expect(await ingressBacklog(jsm)).toBe(2);

  // Messages no partition consumer will ever deliver (after a crash: acked, deletion lost).
  await publish(INGRESS_PARTITIONS, 3);
  expect(await streamMessages()).toBe(5);
  expect(await ingressBacklog(jsm)).toBe(2);

  const consumer = await js.consumers.get(STREAMS.ingress, workerConsumer(0));
  await (await consumer.next({ expires: 2_000 }))!.ackAck();
  // Delivered and not acked still counts.
  const held = await consumer.next({ expires: 2_000 });
  expect(held).not.toBeNull();
  expect(await streamMessages()).toBe(4);
  expect(await ingressBacklog(jsm)).toBe(1);
  await held!.ackAck();
  expect(await ingressBacklog(jsm)).toBe(0);
  expect(await streamMessages()).toBe(3);
});
