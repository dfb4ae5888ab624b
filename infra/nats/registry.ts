import type { NatsConnection } from '@nats-io/transport-node';
import { type KV, Kvm } from '@nats-io/kv';
import { LRUCache } from 'lru-cache';
import { DEFAULT_POLICY, type Policy, policySchema } from '../../domain/policy/policy';
import type { Control } from '../../domain/protocol/contracts';
import { KV_BUCKETS, token, untoken } from './names';

/** A control on its way to a device: what to send, where, and when to try again. */
export type ControlRoute = Readonly<{
  lineage_id: string;
  topic: string;
  control: Control;
  attempts: number;
  next_attempt_at: number;
}>;

export type DeviceRecord = Readonly<{
  device_id: string;
  device_name: string;
  project_id: string;
  topic_slug: string;
  fleet_id: string | null;
}>;

/** How long a cached device record or policy is used before it is read again. */
const FRESH_MS = 5_000;
/** Entries per cache: beyond that the least recently used are read again when needed. */
const CACHED = 100_000;

const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const dec = <T>(b: Uint8Array): T => JSON.parse(new TextDecoder().decode(b)) as T;

/**
 * Who is who: devices by (project, name) and lineages by (device, table), in JetStream KV.
 * `create` is atomic, so two workers racing on a first batch agree on one id.
 */
export class Registry {
  /** Device records for a few seconds: an operator's fleet assignment reaches every worker soon. */
  private readonly devices = new LRUCache<string, DeviceRecord>({ max: CACHED, ttl: FRESH_MS });

  private readonly policies = new LRUCache<string, Policy>({ max: CACHED, ttl: FRESH_MS });
  /** (device, table) → lineage id; an entry only changes when a deleted lineage is replaced. */
  private readonly lineages = new LRUCache<string, string>({ max: CACHED });

  private constructor(
    private readonly deviceKv: KV,
    private readonly lineageKv: KV,
    private readonly controlKv: KV,
    private readonly policyKv: KV,
  ) {}

  static async open(nc: NatsConnection, opts: { replicas?: number } = {}): Promise<Registry> {
    const kvm = new Kvm(nc);
    const replicas = opts.replicas ?? 1;
    const [d, l, c, p] = await Promise.all([
      kvm.create(KV_BUCKETS.devices, { history: 1, replicas }),
      kvm.create(KV_BUCKETS.lineageIndex, { history: 5, replicas }),
      kvm.create(KV_BUCKETS.controls, { history: 1, replicas }),
      kvm.create(KV_BUCKETS.policies, { history: 5, replicas }),
    ]);
    return new Registry(d, l, c, p);
  }

  /**
   * The device's record, registering it with `newId` on first sight. `fleetId` is the fleet a
   * new device starts in (SLUICE_TOPIC_FLEETS); later, only `assignFleet` moves it.
   */
  async resolveDevice(
    projectId: string,
    slug: string,
    name: string,
    newId: string,
    fleetId: string | null = null,
  ): Promise<DeviceRecord> {
    const key = `${token(projectId)}.${token(name)}`;
    const status: LRUCache.Status<string, DeviceRecord> = {};
    const cached = this.devices.get(key, { allowStale: true, status });
    if (cached && status.get === 'hit') return cached;
    if (cached) {
      // Known: refresh it (an operator may have moved it to another fleet).
      const e = await this.deviceKv.get(key);
      if (e && e.operation === 'PUT') {
        const fresh = dec<DeviceRecord>(e.value);
        this.devices.set(key, fresh);
        return fresh;
      }
    }
    const record: DeviceRecord = {
      device_id: newId,
      device_name: name,
      project_id: projectId,
      topic_slug: slug,
      fleet_id: fleetId,
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

  /** Every device of a project (the KV keys of a project share its token as prefix). */
  async listDevices(projectId: string): Promise<DeviceRecord[]> {
    const out: DeviceRecord[] = [];
    for await (const k of await this.deviceKv.keys(`${token(projectId)}.*`)) {
      const e = await this.deviceKv.get(k);
      if (e && e.operation === 'PUT') out.push(dec<DeviceRecord>(e.value));
    }
    return out;
  }

  /** A device of the project by its id or its name. */
  async findDevice(projectId: string, device: string): Promise<DeviceRecord | undefined> {
    const byName = await this.deviceKv.get(`${token(projectId)}.${token(device)}`);
    if (byName && byName.operation === 'PUT') return dec<DeviceRecord>(byName.value);
    return (await this.listDevices(projectId)).find((d) => d.device_id === device);
  }

  /** Move a device into a fleet (or out of any, with null); compare-and-set on the record. */
  async assignFleet(
    projectId: string,
    device: string,
    fleetId: string | null,
  ): Promise<DeviceRecord | undefined> {
    for (let attempt = 0; attempt < 10; attempt++) {
      const found = await this.findDevice(projectId, device);
      if (!found) return undefined;
      const key = `${token(projectId)}.${token(found.device_name)}`;
      const e = await this.deviceKv.get(key);
      if (!e || e.operation !== 'PUT') return undefined;
      const next: DeviceRecord = { ...dec<DeviceRecord>(e.value), fleet_id: fleetId };
      try {
        await this.deviceKv.update(key, enc(next), e.revision);
        this.devices.set(key, next);
        return next;
      } catch {
        // Someone else changed the record in between: read it again.
      }
    }
    throw new Error(`device registry: could not update ${device}`);
  }

  /** The current lineage of every table of a device, from the lineage index. */
  async lineagesOfDevice(deviceId: string): Promise<{ source_table: string; lineage_id: string }[]> {
    const out: { source_table: string; lineage_id: string }[] = [];
    const prefix = `${token(deviceId)}.`;
    for await (const k of await this.lineageKv.keys(`${prefix}*`)) {
      const e = await this.lineageKv.get(k);
      if (e && e.operation === 'PUT')
        out.push({ source_table: untoken(k.slice(prefix.length)), lineage_id: e.string() });
    }
    return out;
  }

  /** Every current lineage id in the lineage index (one per device and table). */
  async allLineageIds(): Promise<string[]> {
    const out: string[] = [];
    for await (const k of await this.lineageKv.keys()) {
      const e = await this.lineageKv.get(k);
      if (e && e.operation === 'PUT') out.push(e.string());
    }
    return out;
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
    const known = this.lineages.get(key);
    if (known) return { lineageId: known, revision: 0 };
    const e = await this.lineageKv.get(key);
    if (e && e.operation === 'PUT') {
      this.lineages.set(key, e.string());
      return { lineageId: e.string(), revision: e.revision };
    }
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
    this.lineages.delete(key);
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

  async putControl(route: ControlRoute): Promise<void> {
    await this.controlKv.put(route.control.control_id, enc(route));
  }

  async getControl(controlId: string): Promise<ControlRoute | undefined> {
    if (!/^[0-9a-fA-F-]{36}$/.test(controlId)) return undefined;
    const e = await this.controlKv.get(controlId);
    return e && e.operation === 'PUT' ? dec<ControlRoute>(e.value) : undefined;
  }

  async deleteControl(controlId: string): Promise<void> {
    await this.controlKv.delete(controlId);
  }

  /** Controls still waiting for their device's ACK. */
  async pendingControls(): Promise<ControlRoute[]> {
    const out: ControlRoute[] = [];
    const keys = await this.controlKv.keys();
    for await (const k of keys) {
      const r = await this.getControl(k);
      if (r) out.push(r);
    }
    return out;
  }

  /** A project's policy (defaults where unset), cached for a few seconds; `fresh` reads it now. */
  async policy(projectId: string, opts: { fresh?: boolean } = {}): Promise<Policy> {
    const cached = opts.fresh ? undefined : this.policies.get(projectId);
    if (cached) return cached;
    const e = await this.policyKv.get(token(projectId));
    const policy = e && e.operation === 'PUT' ? policySchema.parse(dec(e.value)) : DEFAULT_POLICY;
    this.policies.set(projectId, policy);
    return policy;
  }

  async setPolicy(projectId: string, patch: Partial<Policy>): Promise<Policy> {
    const current = await this.policy(projectId, { fresh: true });
    const next = policySchema.parse({ ...current, ...patch });
    await this.policyKv.put(token(projectId), enc(next));
    this.policies.set(projectId, next);
    return next;
  }
}
