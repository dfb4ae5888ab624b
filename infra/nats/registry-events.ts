import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { EventMetadata } from '../../domain/lineage/events';
import type { RegistryEvent } from '../../domain/registry/events';
import { STREAMS, subjects } from './names';
import { SubjectLog } from './subject-log';

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
  private constructor(private readonly log: SubjectLog<StoredRegistryEvent>) {}

  static async create(nc: NatsConnection): Promise<RegistryEventStore> {
    return new RegistryEventStore(
      new SubjectLog(jetstream(nc), await jetstreamManager(nc), {
        stream: STREAMS.registry,
        subjectOf: subjects.registry,
        encode: (registry_id, events) => encodeRegistryCommit({ registry_id, events }),
        decode: decodeRegistryCommit,
        what: 'registry',
      }),
    );
  }

  lastVersion(registryId: string): Promise<{ seq: number; msgId: string | undefined }> {
    return this.log.lastVersion(registryId);
  }

  /** Events after `fromVersion`, and the version they lead to. */
  async load(
    registryId: string,
    fromVersion = 0,
  ): Promise<{ events: StoredRegistryEvent[]; version: number }> {
    const commits = await this.log.readCommits(registryId, { fromVersion });
    return { events: commits.flatMap((c) => c.events), version: commits.at(-1)?.seq ?? fromVersion };
  }

  append(
    registryId: string,
    events: readonly StoredRegistryEvent[],
    expectedVersion: number,
    decisionId: string,
  ): Promise<{ version: number; duplicate: boolean }> {
    return this.log.append(registryId, events, expectedVersion, decisionId);
  }
}
