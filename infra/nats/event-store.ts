import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { LineageEvent, StoredEvent } from '../../domain/lineage/events';
import type { Appended, EventStore, LoadedStream } from '../../domain/shared/ports';
import { STREAMS, subjects } from './names';
import { SubjectLog } from './subject-log';

/** One message of SLUICE_LINEAGE: every event of one decision of one lineage, atomically. */
export type LineageCommit = Readonly<{ lineage_id: string; events: readonly StoredEvent<LineageEvent>[] }>;

/** One stored decision of a lineage, as an audit reads it. */
export type StoredCommit = Readonly<{
  /** Stream sequence: the lineage's version after this decision. */
  seq: number;
  /** When JetStream stored the message (server clock), ISO-8601. */
  time: string;
  events: readonly StoredEvent<LineageEvent>[];
}>;

export const encodeCommit = (c: LineageCommit): Uint8Array => new TextEncoder().encode(JSON.stringify(c));
export const decodeCommit = (data: Uint8Array): LineageCommit => JSON.parse(new TextDecoder().decode(data));

/**
 * The lineage event store on JetStream: one subject per lineage, one message per decision, the
 * subject's last sequence as the version. JetStream error codes are mapped in SubjectLog and
 * nowhere else.
 */
export class JetStreamEventStore implements EventStore<StoredEvent<LineageEvent>> {
  private constructor(private readonly log: SubjectLog<StoredEvent<LineageEvent>>) {}

  static async create(nc: NatsConnection): Promise<JetStreamEventStore> {
    return new JetStreamEventStore(
      new SubjectLog(jetstream(nc), await jetstreamManager(nc), {
        stream: STREAMS.lineage,
        subjectOf: subjects.lineage,
        encode: (lineage_id, events) => encodeCommit({ lineage_id, events }),
        decode: decodeCommit,
        what: 'event',
      }),
    );
  }

  lastVersion(lineageId: string): Promise<{ seq: number; msgId: string | undefined }> {
    return this.log.lastVersion(lineageId);
  }

  load(lineageId: string, fromVersion = 0): Promise<LoadedStream<StoredEvent<LineageEvent>>> {
    return this.log.load(lineageId, fromVersion);
  }

  /**
   * Read-only history for audits: the lineage's commits after `fromVersion`, in order, with their
   * stream sequence and stored time; at most `limit` of them (all when omitted).
   */
  readCommits(
    lineageId: string,
    opts: { fromVersion?: number; limit?: number } = {},
  ): Promise<StoredCommit[]> {
    return this.log.readCommits(lineageId, opts);
  }

  append(
    lineageId: string,
    events: readonly StoredEvent<LineageEvent>[],
    expectedVersion: number,
    decisionId: string,
  ): Promise<Appended> {
    return this.log.append(lineageId, events, expectedVersion, decisionId);
  }
}
