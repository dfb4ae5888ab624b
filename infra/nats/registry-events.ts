import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { StoredEvent } from '../../domain/lineage/events';
import type { RegistryEvent } from '../../domain/registry/events';
import type { Appended, EventStore, LoadedStream } from '../../domain/shared/ports';
import { STREAMS, subjects } from './names';
import { SubjectLog } from './subject-log';

export type StoredRegistryEvent = StoredEvent<RegistryEvent>;

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
export class RegistryEventStore implements EventStore<StoredRegistryEvent> {
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

  load(registryId: string, fromVersion = 0): Promise<LoadedStream<StoredRegistryEvent>> {
    return this.log.load(registryId, fromVersion);
  }

  append(
    registryId: string,
    events: readonly StoredRegistryEvent[],
    expectedVersion: number,
    decisionId: string,
  ): Promise<Appended> {
    return this.log.append(registryId, events, expectedVersion, decisionId);
  }
}
