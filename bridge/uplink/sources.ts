import type { MqttClient } from 'mqtt';
import type { NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, DeliverPolicy, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { DurableConsumer } from '../../infra/nats/durable-consumer';
import type { Logger } from '../../infra/log';

/** The uplink topics (device → cloud); `{slug}/{device}/sync/...`. */
export const UPLINK_TOPICS = [
  '+/+/sync/rows/batch',
  '+/+/sync/telemetry/batch',
  '+/+/sync/schema/observe',
  '+/+/sync/ingest/ack',
  '+/+/sync/ingest/request',
] as const;

/** Bridges share uplinks as one group: each message goes to one member. */
export const SHARE_GROUP = 'sluice-bridge';
export const sharedTopics = (group = SHARE_GROUP): string[] =>
  UPLINK_TOPICS.map((t) => `$share/${group}/${t}`);

/** Where nats-server's MQTT listener stores QoS 1 publishes (`$MQTT.msgs.<subject>`). */
export const MQTT_MSGS_STREAM = '$MQTT_msgs';
const MQTT_MSGS_PREFIX = '$MQTT.msgs.';

/** MQTT topic `a/b/c` is NATS subject `a.b.c`; an empty level is the token `/` (nats-server 2.9). */
export const topicToSubject = (topic: string): string =>
  topic
    .split('/')
    .map((level) => (level === '' ? '/' : level === '+' ? '*' : level))
    .join('.');
export const subjectToTopic = (subject: string): string =>
  subject
    .split('.')
    .map((t) => (t === '/' ? '' : t))
    .join('/');

const durableOf = (topic: string): string => `sluice-bridge-${topic.split('/').slice(3).join('-')}`;
const filterOf = (topic: string): string => `${MQTT_MSGS_PREFIX}${topicToSubject(topic)}`;

/** A byte that separates the fields of a NATS protocol line (`HMSG <subject> <sid> …`). */
export const breaksProtocolLine = (subject: string): boolean => /[ \t\r\n]/.test(subject);

/**
 * nats-server 2.9's MQTT listener keeps a topic with a space, tab, CR or LF in its subject as is.
 * Delivered to a client, that subject splits the protocol line and the client stops reading the
 * connection: every bridge pulling it would stall, and get it again after ack_wait. This finds
 * such messages among those the uplink consumers delivered and not yet acked, reading them through
 * the JSON API (where a subject is a JSON string, harmless), hands each to `handle` (the topic is
 * rejected there, recorded like any bad uplink) and deletes it from the stream, so it is never
 * delivered again. Run on the main connection when the uplink connection went stale.
 */
export async function removeUndeliverable(o: {
  jsm: JetStreamManager;
  handle: (topic: string, payload: Buffer) => Promise<void>;
  log: Logger;
}): Promise<number> {
  let removed = 0;
  for (const topic of UPLINK_TOPICS) {
    const info = await o.jsm.consumers.info(MQTT_MSGS_STREAM, durableOf(topic)).catch(() => null);
    if (!info) continue;
    const last = info.delivered.stream_seq;
    let seq = info.ack_floor.stream_seq + 1;
    while (seq <= last) {
      const query = { seq, next_by_subj: filterOf(topic) } as unknown as { seq: number };
      const m = await o.jsm.streams.getMessage(MQTT_MSGS_STREAM, query).catch(() => null);
      if (!m || m.seq > last) break;
      if (breaksProtocolLine(m.subject)) {
        o.log.warn(
          { seq: m.seq, subject: JSON.stringify(m.subject).slice(0, 200) },
          'undeliverable uplink removed',
        );
        await o.handle(subjectToTopic(m.subject.slice(MQTT_MSGS_PREFIX.length)), Buffer.from(m.data));
        await o.jsm.streams.deleteMessage(MQTT_MSGS_STREAM, m.seq, false);
        removed++;
      }
      seq = m.seq + 1;
    }
  }
  return removed;
}

/**
 * One durable pull consumer per uplink topic on the MQTT listener's own stream (2.9 consumers
 * take one filter subject). Every bridge pulls from the same durables, so each message goes to
 * one bridge, and it is acked only after `handle` (the ingress append) resolved: a bridge that
 * dies holding a message leaves it to be redelivered to another after ack_wait.
 */
export function mqttStreamConsumers(o: {
  nc: NatsConnection;
  handle: (topic: string, payload: Buffer) => Promise<void>;
  log: Logger;
}): DurableConsumer[] {
  return UPLINK_TOPICS.map((topic) => {
    return new DurableConsumer({
      nc: o.nc,
      stream: MQTT_MSGS_STREAM,
      config: {
        durable_name: durableOf(topic),
        filter_subject: filterOf(topic),
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ack_wait: 30_000_000_000,
        max_ack_pending: 1_000,
      },
      // Small pulls: a bridge that buffered hundreds would leave the others idle.
      maxMessages: 16,
      handle: async (m: JsMsg) => {
        try {
          await o.handle(subjectToTopic(m.subject.slice(MQTT_MSGS_PREFIX.length)), Buffer.from(m.data));
          m.ack();
        } catch (err) {
          o.log.error({ err, subject: m.subject }, 'uplink not handled; left un-acked for redelivery');
          m.nak(1_000);
        }
      },
      log: o.log,
      what: `uplinks ${topic}`,
    });
  });
}

/**
 * Whether the MQTT broker is this NATS server's own MQTT listener: a QoS 1 probe published over
 * MQTT shows up on the NATS subject it maps to. (nats-server 2.9 grants a `$share/...`
 * subscription but delivers nothing to it, so the two must not be confused.) The probe goes to a
 * receipt topic of a device that does not exist: the bridge's broker permissions allow it there.
 */
export async function brokerIsNatsListener(
  client: MqttClient,
  nc: NatsConnection,
  probeId: string,
  timeoutMs = 3_000,
): Promise<boolean> {
  const topic = `sluice-probe/${probeId.replace(/[^A-Za-z0-9_-]/g, '_')}/sync/ingest/receipt`;
  const sub = nc.subscribe(topicToSubject(topic), { max: 1 });
  try {
    await nc.flush();
    const seen = (async () => {
      for await (const _ of sub) return true;
      return false;
    })();
    await client.publishAsync(topic, 'probe', { qos: 1 });
    const timer = new Promise<boolean>((r) => setTimeout(() => r(false), timeoutMs).unref());
    return await Promise.race([seen, timer]);
  } finally {
    sub.unsubscribe();
  }
}
