import mqtt, { type MqttClient } from 'mqtt';
import {
  CONTROL_TOPIC,
  RECEIPT_TOPIC,
  type RowBatch,
  type TelemetryBatch,
  validateRowBatch,
  validateTelemetryBatch,
} from '../../domain/protocol/contracts';

export type ArrivedRow = Readonly<{ table: string; epoch: string; seq: number; batchId: string }>;

/**
 * Plays the cloud in tests: subscribes to every device's uplinks, validates batches with the
 * real wire contracts, and publishes receipts the way the bridge does (after "durability", here
 * at once). Receipts can be switched off to simulate a cloud that never confirms.
 */
export class FakeCloud {
  readonly rowBatches: RowBatch[] = [];
  readonly telemetryBatches: TelemetryBatch[] = [];
  readonly invalid: { topic: string; reason: string }[] = [];
  readonly acks: string[] = [];
  /** Every row in arrival order, duplicates included. */
  readonly arrivals: ArrivedRow[] = [];
  receipts = true;

  private constructor(private readonly client: MqttClient) {}

  static async connect(
    url: string,
    opts: { clientId?: string; clean?: boolean; receipts?: boolean } = {},
  ): Promise<FakeCloud> {
    const client = await mqtt.connectAsync(url, {
      clientId: opts.clientId ?? `fake-cloud-${process.pid}-${Math.random().toString(16).slice(2, 8)}`,
      protocolVersion: 4,
      clean: opts.clean ?? true,
      reconnectPeriod: 100,
    });
    const cloud = new FakeCloud(client);
    if (opts.receipts === false) cloud.receipts = false;
    client.on('message', (topic, payload) => cloud.onMessage(topic, payload));
    // mqtt.js resubscribes clean sessions itself; a persistent session keeps them at the broker.
    await cloud.subscribe();
    return cloud;
  }

  async subscribe(): Promise<void> {
    await this.client.subscribeAsync(
      ['+/+/sync/rows/batch', '+/+/sync/telemetry/batch', '+/+/sync/ingest/ack'],
      { qos: 1 },
    );
  }

  private onMessage(topic: string, payload: Buffer): void {
    const root = topic.split('/').slice(0, 2).join('/');
    const body: unknown = JSON.parse(payload.toString('utf8'));
    if (topic.endsWith('/sync/ingest/ack')) {
      this.acks.push((body as { control_id: string }).control_id);
      return;
    }
    if (topic.endsWith('/sync/rows/batch')) {
      const v = validateRowBatch(body);
      if (!v.ok) {
        this.invalid.push({ topic, reason: `${v.rejection.code}: ${v.rejection.message}` });
        return;
      }
      const b = v.value;
      this.rowBatches.push(b);
      for (const r of b.rows) {
        this.arrivals.push({
          table: b.source_table,
          epoch: b.journal_epoch,
          seq: r.commit_seq,
          batchId: b.batch_id,
        });
      }
      if (this.receipts) {
        this.publish(`${root}/${RECEIPT_TOPIC}`, {
          format_version: 1,
          batch_id: b.batch_id,
          source_table: b.source_table,
          journal_epoch: b.journal_epoch,
          last_commit_seq: b.last_commit_seq,
        });
      }
      return;
    }
    const v = validateTelemetryBatch(body);
    if (!v.ok) {
      this.invalid.push({ topic, reason: `${v.rejection.code}: ${v.rejection.message}` });
      return;
    }
    this.telemetryBatches.push(v.value);
    if (this.receipts) {
      this.publish(`${root}/${RECEIPT_TOPIC}`, {
        format_version: 1,
        batch_id: v.value.batch_id,
        source_table: v.value.source_table,
        batch_seq: v.value.batch_seq,
      });
    }
  }

  private publish(topic: string, body: unknown): void {
    this.client.publish(topic, JSON.stringify(body), { qos: 1 });
  }

  /** Any bytes on any topic, at QoS 1 (hostile-input tests). */
  async publishRaw(topic: string, payload: string | Buffer): Promise<void> {
    await this.client.publishAsync(topic, payload, { qos: 1 });
  }

  async sendControl(root: string, control: unknown): Promise<void> {
    await this.client.publishAsync(`${root}/${CONTROL_TOPIC}`, JSON.stringify(control), { qos: 1 });
  }

  /** Distinct commit_seqs of a table in first-arrival order (per epoch). */
  firstArrivals(table: string): ArrivedRow[] {
    const seen = new Set<string>();
    const out: ArrivedRow[] = [];
    for (const a of this.arrivals) {
      if (a.table !== table) continue;
      const k = `${a.epoch}:${a.seq}`;
      if (seen.has(k)) continue;
      seen.add(k);
      out.push(a);
    }
    return out;
  }

  distinctCount(table: string): number {
    return this.firstArrivals(table).length;
  }

  async close(): Promise<void> {
    await this.client.endAsync(true);
  }
}

/** Every (epoch, seq) of a table arrived in increasing order with no gap from 1..max. */
export function checkContiguous(rows: readonly ArrivedRow[]): string | undefined {
  const byEpoch = new Map<string, number>();
  for (const r of rows) {
    const last = byEpoch.get(r.epoch) ?? 0;
    if (r.seq !== last + 1) return `epoch ${r.epoch}: expected commit_seq ${last + 1}, got ${r.seq}`;
    byEpoch.set(r.epoch, r.seq);
  }
  return undefined;
}
