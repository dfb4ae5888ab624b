/**
 * A device speaking the wire protocol directly, so deliveries can be duplicated, re-ordered and
 * re-sent at will: the same batch id again at once (inside JetStream's dedupe window), again after
 * the window, the same rows under a new batch id, batches out of order, and batches the cloud must
 * refuse. It keeps the table it "writes" in memory: the mirror must end up equal to it.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { uuidv7 } from 'uuidv7';
import { schemaHash } from '../../domain/protocol/fingerprint';
import type { TableImage, Write } from './checker';
import { keyText } from './workload';

export const INJECTED_TABLE = 'events';
const schema = {
  table_name: INJECTED_TABLE,
  columns: [
    { name: 'id', decl_type_affinity: 'INTEGER' as const, pk_ordinal: 1, not_null: true },
    { name: 'body', decl_type_affinity: 'TEXT' as const, pk_ordinal: 0, not_null: false },
  ],
};
const KEYS = 60;

type Row = {
  commit_seq: number;
  op: 'insert' | 'update' | 'delete';
  pk: { id: number };
  row: { id: number; body: string } | null;
};
export type InjectedBatch = Readonly<{ batch_id: string; body: string; seqs: readonly number[] }>;

export class Injector {
  readonly epoch = uuidv7();
  readonly writes: Write[] = [];
  readonly batches: InjectedBatch[] = [];
  /** Deliveries beyond the first of each batch. */
  redeliveries = 0;
  private seq = 0;
  private readonly model = new Map<number, string>();

  private constructor(
    private readonly client: MqttClient,
    readonly device: string,
    private readonly random: () => number,
  ) {}

  static async connect(url: string, device: string, random: () => number): Promise<Injector> {
    const client = await mqtt.connectAsync(url, {
      clientId: `inj-${device}`,
      clean: false,
      protocolVersion: 4,
    });
    return new Injector(client, device, random);
  }

  private get topic(): string {
    return `faults/${this.device}/sync/rows/batch`;
  }

  /** The next batch of 1..10 changes (inserts, updates, deletes on a few keys), applied to the model. */
  next(): InjectedBatch {
    const n = 1 + Math.floor(this.random() * 10);
    const rows: Row[] = [];
    for (let i = 0; i < n; i++) {
      const id = 1 + Math.floor(this.random() * KEYS);
      const seq = ++this.seq;
      if (this.model.has(id) && this.random() < 0.25) {
        this.model.delete(id);
        rows.push({ commit_seq: seq, op: 'delete', pk: { id }, row: null });
      } else {
        const body = `b${seq}`;
        const op = this.model.has(id) ? 'update' : 'insert';
        this.model.set(id, body);
        rows.push({ commit_seq: seq, op, pk: { id }, row: { id, body } });
      }
    }
    return this.batch(uuidv7(), rows, true);
  }

  private batch(batchId: string, rows: readonly Row[], record: boolean, epoch = this.epoch): InjectedBatch {
    const seqs = rows.map((r) => r.commit_seq);
    // batch_id first: the rejections stream keeps a payload excerpt, and the checker matches on it.
    const body = JSON.stringify({
      batch_id: batchId,
      format_version: 1,
      capture_strategy: 'sqlite_row_batch_v1',
      journal_epoch: epoch,
      source_table: INJECTED_TABLE,
      schema_hash: schemaHash(schema),
      schema_columns: schema,
      first_commit_seq: Math.min(...seqs),
      last_commit_seq: Math.max(...seqs),
      rows,
    });
    const b = { batch_id: batchId, body, seqs };
    if (record) {
      this.batches.push(b);
      for (const s of seqs) this.writes.push({ table: INJECTED_TABLE, epoch, seq: s, batch_id: batchId });
    }
    return b;
  }

  /** The same rows as an earlier batch under a new batch id: no msg-id dedupe can catch it. */
  again(b: InjectedBatch): InjectedBatch {
    const parsed = JSON.parse(b.body) as { rows: Row[] };
    return this.batch(uuidv7(), parsed.rows, false);
  }

  /** A batch the bridge must refuse (its journal_epoch is not a UUIDv7); its rows count as rejected. */
  refused(): InjectedBatch {
    const rows: Row[] = [{ commit_seq: 1, op: 'insert', pk: { id: 1 }, row: { id: 1, body: 'refused' } }];
    const b = this.batch(uuidv7(), rows, false, 'not-an-epoch');
    this.writes.push({
      table: INJECTED_TABLE,
      epoch: `not-an-epoch/${b.batch_id}`,
      seq: 1,
      batch_id: b.batch_id,
    });
    return b;
  }

  async publish(b: InjectedBatch, redelivery = false): Promise<void> {
    if (redelivery) this.redeliveries++;
    await this.client.publishAsync(this.topic, b.body, { qos: 1 });
  }

  get lastSeq(): number {
    return this.seq;
  }

  image(): TableImage {
    return new Map([...this.model].map(([id, body]) => [keyText({ id }), { id, body }]));
  }

  async close(): Promise<void> {
    await this.client.endAsync();
  }
}
