import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { NatsConnection } from '@nats-io/transport-node';
import { type JetStreamClient, jetstream } from '@nats-io/jetstream';
import type { Receipt } from '../../domain/protocol/contracts';
import { type RejectionRecord, encodeJson } from '../../infra/nats/ingress';
import { subjects } from '../../infra/nats/names';
import type { Logger } from '../../infra/log';
import { decodeUplink } from './decode';
import type { Metrics } from '../../infra/metrics';

export type BridgeOptions = {
  nc: NatsConnection;
  mqttUrl: string;
  clientId: string;
  username?: string;
  password?: string;
  /** TLS to the broker (mqtts://): its CA, and a client certificate where the broker maps them. */
  tls?: Readonly<{ ca?: Buffer; cert?: Buffer; key?: Buffer }>;
  projectOf: (slug: string) => string;
  log: Logger;
  metrics?: Metrics;
  now?: () => Date;
};

const UPLINK_SUBSCRIPTIONS = [
  '+/+/sync/rows/batch',
  '+/+/sync/telemetry/batch',
  '+/+/sync/schema/observe',
  '+/+/sync/ingest/ack',
  '+/+/sync/ingest/request',
];

/**
 * MQTT → JetStream. Each uplink is validated, then appended to the ingress stream; only after
 * JetStream acknowledged the append does the bridge PUBACK the device's message and send a
 * receipt. If JetStream is unreachable the message stays un-acked (retried here; the broker
 * redelivers it if the bridge dies), so a broker PUBACK never stands for a lost batch.
 */
export class UplinkBridge {
  private client: MqttClient | undefined;
  private readonly js: JetStreamClient;
  private stopping = false;

  constructor(private readonly opts: BridgeOptions) {
    this.js = jetstream(opts.nc);
  }

  async start(): Promise<void> {
    const o = this.opts;
    const options: IClientOptions = {
      clientId: o.clientId,
      clean: false, // the persistent session keeps un-acked uplinks across bridge restarts
      protocolVersion: 4,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      ...(o.username ? { username: o.username, password: o.password } : {}),
      ...(o.tls ?? {}),
    };
    const client = mqtt.connect(o.mqttUrl, options);
    this.client = client;
    client.handleMessage = (packet, callback) => {
      this.handle(packet.topic, packet.payload as Buffer).then(
        () => callback(),
        (err: unknown) => {
          o.log.error({ err, topic: packet.topic }, 'uplink not handled; left un-acked for redelivery');
          callback(err as Error);
        },
      );
    };
    client.on('error', (err) => o.log.warn({ err: err.message }, 'mqtt error'));
    client.on('connect', (ack) => {
      o.log.info({ sessionPresent: ack.sessionPresent }, 'bridge connected to MQTT broker');
      client.subscribe(UPLINK_SUBSCRIPTIONS, { qos: 1 }, (err) => {
        if (err) o.log.error({ err: err.message }, 'bridge subscribe failed');
      });
    });
    await new Promise<void>((resolve, reject) => {
      const onErr = (err: Error) => {
        if (!client.connected) reject(err);
      };
      client.once('connect', () => {
        client.off('error', onErr);
        resolve();
      });
      client.once('error', onErr);
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.client?.endAsync();
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
