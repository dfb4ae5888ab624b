import type { NatsConnection } from '@nats-io/transport-node';
import { type KV, Kvm } from '@nats-io/kv';
import type { LineageState } from '../../domain/lineage/state';

/**
 * The shape of LineageState a snapshot holds. Bump it whenever that shape changes: a snapshot of
 * another schema is ignored and the lineage is folded from its events (`currentSnapshot`), so no
 * fold or rule needs to read a state of an older shape.
 */
export const SNAPSHOT_SCHEMA = 3;

export type Snapshot = Readonly<{ schema: number; version: number; state: LineageState }>;

/** The snapshot if it holds the current shape of LineageState; otherwise none (refold the events). */
export const currentSnapshot = (snap: Snapshot | undefined): Snapshot | undefined =>
  snap?.schema === SNAPSHOT_SCHEMA ? snap : undefined;

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
    return e.json<Snapshot>();
  }

  async put(lineageId: string, snapshot: Snapshot): Promise<void> {
    await this.kv.put(lineageId, JSON.stringify(snapshot));
  }
}
