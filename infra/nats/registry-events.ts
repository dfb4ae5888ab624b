import type { NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
} from '@nats-io/jetstream';
import type { EventMetadata } from '../../domain/lineage/events';
import type { RegistryEvent } from '../../domain/registry/events';
import { ConcurrencyError } from '../../domain/shared/ports';
import { STREAMS, subjects } from './names';

const WRONG_LAST_SEQUENCE = 10071;

export type StoredRegistryEvent = RegistryEvent &
  Readonly<{ id: string; occurred_at: string; metadata: EventMetadata }>;

/** One message of SLUICE_REGISTRY: every event of one decision of one registry entry. */
export type RegistryCommit = Readonly<{ registry_id: string; events: readonly StoredRegistryEvent[] }>;

export const encodeRegistryCommit = (c: RegistryCommit): Uint8Array =>
  new TextEncoder().encode(JSON.stringify(c));
export const decodeRegistryCommit = (data: Uint8Array): RegistryCommit =>
  JSON.parse(new TextDecoder().decode(data)) as RegistryCommit;

/**
 * Registry entries on JetStream, as lineages are: one subject per entry (`edge.registry.<id>`,
 * the id a hash, so no table name reaches a subject), one message per decision, the subject's
 * last sequence as the version for optimistic concurrency.
 */
export class RegistryEventStore {
  private constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
  ) {}

  static async create(nc: NatsConnection): Promise<RegistryEventStore> {
    return new RegistryEventStore(jetstream(nc), await jetstreamManager(nc));
  }

  async lastVersion(registryId: string): Promise<{ seq: number; msgId: string | undefined }> {
    const m = await this.jsm.streams.getMessage(STREAMS.registry, {
      last_by_subj: subjects.registry(registryId),
    });
    if (!m) return { seq: 0, msgId: undefined };
    return { seq: m.seq, msgId: m.header?.get('Nats-Msg-Id') || undefined };
  }

  /** Events after `fromVersion`, and the version they lead to. */
  async load(
    registryId: string,
    fromVersion = 0,
  ): Promise<{ events: StoredRegistryEvent[]; version: number }> {
    const head = await this.lastVersion(registryId);
    if (head.seq <= fromVersion) return { events: [], version: Math.max(fromVersion, head.seq) };
    const info = await this.jsm.consumers.add(STREAMS.registry, {
      filter_subject: subjects.registry(registryId),
      ack_policy: AckPolicy.None,
      mem_storage: true,
      inactive_threshold: 30_000_000_000,
      ...(fromVersion > 0
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: fromVersion + 1 }
        : { deliver_policy: DeliverPolicy.All }),
    });
    const consumer = await this.js.consumers.get(STREAMS.registry, info.name);
    const events: StoredRegistryEvent[] = [];
    let version = fromVersion;
    try {
      while (version < head.seq) {
        const batch = await consumer.fetch({ max_messages: 512, expires: 5_000 });
        let got = 0;
        for await (const m of batch) {
          got++;
          events.push(...decodeRegistryCommit(m.data).events);
          version = m.seq;
          if (version >= head.seq) break;
        }
        if (got === 0) throw new Error(`registry store: could not read ${registryId} up to ${head.seq}`);
      }
    } finally {
      await this.jsm.consumers.delete(STREAMS.registry, info.name).catch(() => undefined);
    }
    return { events, version };
  }

  async append(
    registryId: string,
    events: readonly StoredRegistryEvent[],
    expectedVersion: number,
    decisionId: string,
  ): Promise<{ version: number; duplicate: boolean }> {
    const msgID = `${registryId}:${decisionId}`;
    try {
      const ack = await this.js.publish(
        subjects.registry(registryId),
        encodeRegistryCommit({ registry_id: registryId, events }),
        { msgID, expect: { lastSubjectSequence: expectedVersion } },
      );
      return { version: ack.seq, duplicate: ack.duplicate };
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === WRONG_LAST_SEQUENCE) {
        const head = await this.lastVersion(registryId);
        if (head.msgId === msgID) return { version: head.seq, duplicate: true };
        throw new ConcurrencyError(registryId, expectedVersion);
      }
      throw err;
    }
  }
}
