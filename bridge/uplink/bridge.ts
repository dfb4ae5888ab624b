import mqtt, { type IClientOptions, type ISubscriptionMap, type MqttClient } from 'mqtt';
import type { NatsConnection } from '@nats-io/transport-node';
import { type JetStreamClient, jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { Receipt } from '../../domain/protocol/contracts';
import { type RejectionRecord, encodeJson } from '../../infra/nats/ingress';
import { subjects } from '../../infra/nats/names';
import type { Logger } from '../../infra/log';
import { decodeUplink } from './decode';
import type { Metrics } from '../../infra/metrics';
import { brokerServers } from '../../infra/config/brokers';
import type { DurableConsumer } from '../../infra/nats/durable-consumer';
import {
  UPLINK_TOPICS,
  brokerIsNatsListener,
  mqttStreamConsumers,
  removeUndeliverable,
  sharedTopics,
} from './sources';

/**
 * `shared`: a `$share/sluice-bridge/...` MQTT subscription (Mosquitto). `jetstream`: durable
 * consumers on nats-server's MQTT stream (its 2.9 listener has no shared subscriptions).
 * `auto`: `jetstream` when the broker turns out to be this NATS server's listener.
 */
export type UplinkSource = 'auto' | 'shared' | 'jetstream';

export type BridgeOptions = {
  nc: NatsConnection;
  /** One broker URL or several, comma-separated (cluster nodes): reconnects go round robin. */
  mqttUrl: string;
  /** Unique per bridge: two bridges on one client id take each other's session. */
  clientId: string;
  uplinks?: UplinkSource;
  username?: string;
  password?: string;
  /** TLS to the broker (mqtts://): its CA, and a client certificate where the broker maps them. */
  tls?: Readonly<{ ca?: Buffer; cert?: Buffer; key?: Buffer }>;
  projectOf: (slug: string) => string;
  /**
   * A connection of its own for reading uplinks from nats-server's MQTT listener (`jetstream`),
   * with short pings: a message that stalls its reader (`removeUndeliverable`) is then noticed in
   * seconds and the rest of the bridge keeps its connection. Without it the uplinks share `nc`.
   */
  uplinkConnection?: () => Promise<NatsConnection>;
  log: Logger;
  metrics?: Metrics;
  now?: () => Date;
};

/**
 * MQTT → JetStream. Each uplink is validated, then appended to the ingress stream; only after
 * JetStream acknowledged the append does the bridge ack the message (PUBACK, or the JetStream
 * ack on the MQTT listener's stream) and send a receipt. If JetStream is unreachable the message
 * stays un-acked (retried here; redelivered if the bridge dies), so a broker PUBACK never stands
 * for a lost batch. Any number of bridges share the uplinks: each message reaches one of them.
 */
export class UplinkBridge {
  private client: MqttClient | undefined;
  private readonly js: JetStreamClient;
  private stopping = false;
  private consumers: DurableConsumer[] = [];
  private source: 'shared' | 'jetstream' | undefined;
  private readonly inflight = new Set<Promise<void>>();
  private uplinkNc: NatsConnection | undefined;
  private sweeping: Promise<void> = Promise.resolve();

  constructor(private readonly opts: BridgeOptions) {
    this.js = jetstream(opts.nc);
  }

  async start(): Promise<void> {
    const o = this.opts;
    const servers = brokerServers(o.mqttUrl);
    const options: IClientOptions = {
      clientId: o.clientId,
      clean: false, // the persistent session keeps un-acked uplinks across bridge restarts
      protocolVersion: 4,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      ...(o.username ? { username: o.username, password: o.password } : {}),
      ...(o.tls ?? {}),
      ...servers[0],
      servers,
    };
    const client = mqtt.connect(options);
    this.client = client;
    client.handleMessage = (packet, callback) => {
      const handled = this.handle(packet.topic, packet.payload as Buffer);
      this.inflight.add(handled);
      void handled.catch(() => undefined).finally(() => this.inflight.delete(handled));
      handled.then(
        () => callback(),
        (err: unknown) => {
          o.log.error({ err, topic: packet.topic }, 'uplink not handled; left un-acked for redelivery');
          callback(err as Error);
        },
      );
    };
    client.on('error', (err) => o.log.warn({ err: err.message }, 'mqtt error'));
    const connected = (sessionPresent: boolean) =>
      o.log.info(
        {
          sessionPresent,
          clientId: o.clientId,
          broker: `${client.options.host ?? ''}:${client.options.port ?? ''}`,
          uplinks: this.source,
        },
        'bridge connected to MQTT broker',
      );
    // Logged once the uplinks are subscribed (scripts wait for this line before devices publish).
    client.on('connect', (ack) => {
      if (this.source) void this.subscribe(client, this.source).then(() => connected(ack.sessionPresent));
    });
    const first = await new Promise<boolean>((resolve, reject) => {
      const onErr = (err: Error) => {
        if (!client.connected) reject(err);
      };
      client.once('connect', (ack) => {
        client.off('error', onErr);
        resolve(ack.sessionPresent);
      });
      client.once('error', onErr);
    });
    const wanted = o.uplinks ?? 'auto';
    this.source =
      wanted !== 'auto'
        ? wanted
        : (await brokerIsNatsListener(client, o.nc, o.clientId))
          ? 'jetstream'
          : 'shared';
    if (this.source === 'jetstream') {
      const nc = o.uplinkConnection ? await o.uplinkConnection() : o.nc;
      if (nc !== o.nc) this.uplinkNc = nc;
      this.watchUplinks(nc);
      await this.sweep();
      this.consumers = mqttStreamConsumers({ nc, handle: (t, p) => this.handle(t, p), log: o.log });
      for (const c of this.consumers) await c.start();
    }
    await this.subscribe(client, this.source);
    connected(first);
  }

  /**
   * Subscribes the shared uplink topics (`shared`), and drops the plain ones an older bridge left
   * in this session (each would get every batch). Resolves once the broker answered.
   */
  private async subscribe(client: MqttClient, source: 'shared' | 'jetstream'): Promise<void> {
    const log = this.opts.log;
    const unsubscribed = client
      .unsubscribeAsync([...UPLINK_TOPICS])
      .catch((err: Error) => log.warn({ err: err.message }, 'bridge unsubscribe failed'));
    if (source !== 'shared') {
      await unsubscribed;
      return;
    }
    // Sent at every connect, even to a present session: Mosquitto 2.0.11 restores a shared
    // subscription from its persistence file after a restart but delivers nothing to it until it
    // is subscribed again (and mqtt.js skips topics it believes subscribed unless told).
    const topics: ISubscriptionMap = Object.fromEntries(sharedTopics().map((t) => [t, { qos: 1 }]));
    topics.resubscribe = true;
    await Promise.all([
      unsubscribed,
      client.subscribeAsync(topics).then(
        (granted) => {
          if (granted.some((g) => g.qos === 128))
            log.error({ granted }, 'the broker refused a shared uplink subscription; check its ACL');
        },
        (err: Error) => log.error({ err: err.message }, 'bridge subscribe failed'),
      ),
    ]);
  }

  /** A stale or lost uplink connection may be a reader stopped by an undeliverable subject. */
  private watchUplinks(nc: NatsConnection): void {
    void (async () => {
      for await (const s of nc.status()) {
        if (this.stopping) return;
        if (s.type === 'staleConnection' || s.type === 'disconnect') void this.sweep();
      }
    })().catch(() => undefined);
  }

  /** Remove undeliverable uplinks (one sweep at a time); failures are logged, never thrown. */
  private sweep(): Promise<void> {
    this.sweeping = this.sweeping.then(async () => {
      try {
        const jsm = await jetstreamManager(this.opts.nc);
        await removeUndeliverable({ jsm, handle: (t, p) => this.handle(t, p), log: this.opts.log });
      } catch (err) {
        this.opts.log.warn({ err: (err as Error).message }, 'undeliverable uplink sweep failed');
      }
    });
    return this.sweeping;
  }

  /** Which way this bridge reads uplinks (after start). */
  get uplinkSource(): 'shared' | 'jetstream' | undefined {
    return this.source;
  }

  /**
   * A stopped bridge leaves the share group first: Mosquitto keeps sending a share to a member's
   * offline session, where it would wait for a bridge that may never come back. (One that crashes
   * stays a member; its share waits for it to restart under the same id.)
   */
  async stop(): Promise<void> {
    const client = this.client;
    if (this.source === 'shared' && client?.connected)
      await client.unsubscribeAsync(sharedTopics()).catch(() => undefined);
    // Uplinks being appended get a moment to finish and be acked; past it they stay un-acked.
    const grace = new Promise((r) => setTimeout(r, 5_000).unref());
    await Promise.race([Promise.allSettled([...this.inflight]), grace]);
    this.stopping = true;
    await Promise.all(this.consumers.map((c) => c.stop()));
    await this.sweeping;
    await this.uplinkNc?.close().catch(() => undefined);
    await client?.endAsync();
  }

  /** Publish a message to a device (receipts here; controls through the downlink dispatcher). */
  async publishToDevice(topic: string, body: unknown): Promise<void> {
    if (!this.client) throw new Error('bridge not started');
    await this.client.publishAsync(topic, JSON.stringify(body), { qos: 1 });
  }

  get mqtt(): MqttClient | undefined {
    return this.client;
  }

  private async handle(topic: string, payload: Buffer): Promise<void> {
    const o = this.opts;
    const receivedAt = (o.now?.() ?? new Date()).toISOString();
    const d = decodeUplink(topic, payload, o.projectOf, receivedAt);
    if (!d.ok) {
      await this.reject(d.record);
      return;
    }
    await this.appendDurably(d.subject, encodeJson(d.message), d.msgID);
    o.metrics?.uplinks.inc({ kind: d.message.kind });
    if (d.receipt) this.sendReceipt(d.receipt.topic, d.receipt.body);
  }

  /**
   * Not awaited: MQTT.js handles incoming packets one at a time, so waiting here for the
   * receipt's own PUBACK (an incoming packet queued behind this one) would deadlock.
   */
  private sendReceipt(topic: string, receipt: Receipt): void {
    this.client?.publish(topic, JSON.stringify(receipt), { qos: 1 }, (err) => {
      // The batch is durable; a lost receipt only makes the device re-send, and dedupe absorbs that.
      if (err) this.opts.log.warn({ err: err.message, topic }, 'receipt not sent');
    });
  }

  private async reject(record: RejectionRecord): Promise<void> {
    this.opts.metrics?.rejections.inc({ code: record.code });
    this.opts.log.warn(
      {
        device: record.device_key,
        code: record.code,
        topic: record.topic.slice(0, 200),
        reason: record.message,
      },
      'uplink rejected',
    );
    await this.appendDurably(subjects.rejected(record.device_key), encodeJson(record));
  }

  /** Retry until JetStream takes it: the caller's PUBACK waits on this. */
  private async appendDurably(subject: string, data: Uint8Array, msgID?: string): Promise<void> {
    let delay = 100;
    for (;;) {
      try {
        await this.js.publish(subject, data, msgID ? { msgID, timeout: 5_000 } : { timeout: 5_000 });
        return;
      } catch (err) {
        if (this.stopping) throw err;
        this.opts.metrics?.appendRetries.inc();
        this.opts.log.warn(
          { err: (err as Error).message, subject },
          'JetStream append failed; retrying (uplink stays un-acked)',
        );
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 5_000);
      }
    }
  }
}
