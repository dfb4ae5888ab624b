import type { NatsConnection } from '@nats-io/transport-node';
import { type KV, Kvm } from '@nats-io/kv';
import { KV_BUCKETS, token } from './names';

export type DeviceRecord = Readonly<{
  device_id: string;
  device_name: string;
  project_id: string;
  topic_slug: string;
  fleet_id: string | null;
}>;

const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const dec = <T>(b: Uint8Array): T => JSON.parse(new TextDecoder().decode(b)) as T;

/**
 * Who is who: devices by (project, name) and lineages by (device, table), in JetStream KV.
 * `create` is atomic, so two workers racing on a first batch agree on one id.
 */
export class Registry {
  private readonly devices = new Map<string, DeviceRecord>();

  private constructor(
    private readonly deviceKv: KV,
    private readonly lineageKv: KV,
  ) {}

  static async open(nc: NatsConnection, opts: { replicas?: number } = {}): Promise<Registry> {
    const kvm = new Kvm(nc);
    const replicas = opts.replicas ?? 1;
    const [d, l] = await Promise.all([
      kvm.create(KV_BUCKETS.devices, { history: 1, replicas }),
      kvm.create(KV_BUCKETS.lineageIndex, { history: 5, replicas }),
    ]);
    return new Registry(d, l);
  }

  /** The device's record, registering it with `newId` on first sight. */
  async resolveDevice(projectId: string, slug: string, name: string, newId: string): Promise<DeviceRecord> {
    const key = `${token(projectId)}.${token(name)}`;
    const cached = this.devices.get(key);
    if (cached) return cached;
    const record: DeviceRecord = {
      device_id: newId,
      device_name: name,
      project_id: projectId,
      topic_slug: slug,
      fleet_id: null,
    };
    let found: DeviceRecord;
    try {
      await this.deviceKv.create(key, enc(record));
      found = record;
    } catch {
      const e = await this.deviceKv.get(key);
      if (!e || e.operation !== 'PUT') throw new Error(`device registry: cannot resolve ${name}`);
      found = dec<DeviceRecord>(e.value);
    }
    this.devices.set(key, found);
    return found;
  }

  private lineageKey(deviceId: string, table: string): string {
    return `${token(deviceId)}.${token(table)}`;
  }

  /** The lineage id for (device, table): the current one, or `newId` if there is none yet. */
  async resolveLineage(
    deviceId: string,
    table: string,
    newId: string,
  ): Promise<{ lineageId: string; revision: number }> {
    const key = this.lineageKey(deviceId, table);
    const e = await this.lineageKv.get(key);
    if (e && e.operation === 'PUT') return { lineageId: e.string(), revision: e.revision };
    try {
      const revision = e
        ? await this.lineageKv.update(key, newId, e.revision)
        : await this.lineageKv.create(key, newId);
      return { lineageId: newId, revision };
    } catch {
      const again = await this.lineageKv.get(key);
      if (!again || again.operation !== 'PUT') throw new Error(`lineage index: cannot resolve ${table}`);
      return { lineageId: again.string(), revision: again.revision };
    }
  }

  /** After a lineage was deleted: point (device, table) at a new lineage, unless someone already did. */
  async replaceLineage(deviceId: string, table: string, deletedId: string, newId: string): Promise<string> {
    const key = this.lineageKey(deviceId, table);
    const e = await this.lineageKv.get(key);
    if (e && e.operation === 'PUT' && e.string() !== deletedId) return e.string();
    try {
      if (e) await this.lineageKv.update(key, newId, e.revision);
      else await this.lineageKv.create(key, newId);
      return newId;
    } catch {
      const again = await this.lineageKv.get(key);
      if (!again || again.operation !== 'PUT') throw new Error(`lineage index: cannot replace ${table}`);
      return again.string();
    }
  }
}
