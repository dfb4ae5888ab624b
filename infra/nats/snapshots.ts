import type { NatsConnection } from '@nats-io/transport-node';
import { type KV, Kvm } from '@nats-io/kv';
import type { LineageState } from '../../domain/lineage/state';

/** Bump when the shape of LineageState changes: older snapshots are then ignored and refolded. */
export const SNAPSHOT_SCHEMA = 2;

export type Snapshot = Readonly<{ schema: number; version: number; state: LineageState }>;

export interface SnapshotStore {
  get(lineageId: string): Promise<Snapshot | undefined>;
  put(lineageId: string, snapshot: Snapshot): Promise<void>;
}

/** Lineage snapshots in JetStream KV: a cold worker loads one and folds only the events after it. */
export class KvSnapshotStore implements SnapshotStore {
  private constructor(private readonly kv: KV) {}

  static async open(nc: NatsConnection, opts: { replicas?: number } = {}): Promise<KvSnapshotStore> {
    const kv = await new Kvm(nc).create('sluice_snapshots', { history: 1, replicas: opts.replicas ?? 1 });
    return new KvSnapshotStore(kv);
  }

  async get(lineageId: string): Promise<Snapshot | undefined> {
    const e = await this.kv.get(lineageId);
    if (!e || e.operation !== 'PUT') return undefined;
    const snap = e.json<Snapshot>();
    return snap.schema === SNAPSHOT_SCHEMA ? snap : undefined;
  }

  async put(lineageId: string, snapshot: Snapshot): Promise<void> {
    await this.kv.put(lineageId, JSON.stringify(snapshot));
  }
}
