import type { NatsConnection } from '@nats-io/transport-node';
import {
  type JetStreamClient,
  type JetStreamManager,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  DeliverPolicy,
  AckPolicy,
} from '@nats-io/jetstream';
import type { LineageEvent, StoredEvent } from '../../domain/lineage/events';
import {
  ConcurrencyError,
  type EventStore,
  type LineageCommit,
  type LoadedStream,
} from '../../domain/shared/ports';
import { STREAMS, subjects } from './names';

const WRONG_LAST_SEQUENCE = 10071;

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
 * The event store on JetStream: one subject per lineage, one message per decision, the
 * subject's last sequence as the version. JetStream error codes are mapped here and nowhere else.
 */
export class JetStreamEventStore implements EventStore {
  private constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
  ) {}

  static async create(nc: NatsConnection): Promise<JetStreamEventStore> {
    return new JetStreamEventStore(jetstream(nc), await jetstreamManager(nc));
  }

  async lastVersion(lineageId: string): Promise<{ seq: number; msgId: string | undefined }> {
    const m = await this.jsm.streams.getMessage(STREAMS.lineage, {
      last_by_subj: subjects.lineage(lineageId),
    });
    if (!m) return { seq: 0, msgId: undefined };
    return { seq: m.seq, msgId: m.header?.get('Nats-Msg-Id') || undefined };
  }

  async load(lineageId: string, fromVersion = 0): Promise<LoadedStream> {
    const commits = await this.readCommits(lineageId, { fromVersion });
    return { events: commits.flatMap((c) => c.events), version: commits.at(-1)?.seq ?? fromVersion };
  }

  /**
   * Read-only history for audits: the lineage's commits after `fromVersion`, in order, with their
   * stream sequence and stored time; at most `limit` of them (all when omitted).
   */
  async readCommits(
    lineageId: string,
    opts: { fromVersion?: number; limit?: number } = {},
  ): Promise<StoredCommit[]> {
    const fromVersion = opts.fromVersion ?? 0;
    const limit = opts.limit ?? Number.POSITIVE_INFINITY;
    const head = await this.lastVersion(lineageId);
    if (head.seq <= fromVersion || limit <= 0) return [];
    // An ephemeral pull consumer filtered to this lineage (single filter_subject: nats-server 2.9).
    const info = await this.jsm.consumers.add(STREAMS.lineage, {
      filter_subject: subjects.lineage(lineageId),
      ack_policy: AckPolicy.None,
      mem_storage: true,
      inactive_threshold: 30_000_000_000,
      ...(fromVersion > 0
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: fromVersion + 1 }
        : { deliver_policy: DeliverPolicy.All }),
    });
    const consumer = await this.js.consumers.get(STREAMS.lineage, info.name);
    const commits: StoredCommit[] = [];
    let version = fromVersion;
    try {
      while (version < head.seq && commits.length < limit) {
        const batch = await consumer.fetch({
          max_messages: Math.min(512, limit - commits.length),
          expires: 5_000,
        });
        let got = 0;
        for await (const m of batch) {
          got++;
          commits.push({ seq: m.seq, time: m.time.toISOString(), events: decodeCommit(m.data).events });
          version = m.seq;
          if (version >= head.seq) break;
        }
        if (got === 0) throw new Error(`event store: could not read ${lineageId} up to ${head.seq}`);
      }
    } finally {
      await this.jsm.consumers.delete(STREAMS.lineage, info.name).catch(() => undefined);
    }
    return commits;
  }

  async append(
    lineageId: string,
    events: readonly StoredEvent<LineageEvent>[],
    expectedVersion: number,
    decisionId: string,
  ): Promise<{ version: number; duplicate: boolean }> {
    // JetStream dedupes msg-ids across the whole stream; a decision id is unique per lineage only.
    const msgID = `${lineageId}:${decisionId}`;
    try {
      const ack = await this.js.publish(
        subjects.lineage(lineageId),
        encodeCommit({ lineage_id: lineageId, events }),
        {
          msgID,
          expect: { lastSubjectSequence: expectedVersion },
        },
      );
      return { version: ack.seq, duplicate: ack.duplicate };
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === WRONG_LAST_SEQUENCE) {
        // The server checks the expected sequence before msg-id dedupe: a retry of an append
        // whose ack was lost lands here. If the head is our own decision, it is already durable.
        const head = await this.lastVersion(lineageId);
        if (head.msgId === msgID) return { version: head.seq, duplicate: true };
        throw new ConcurrencyError(lineageId, expectedVersion);
      }
      throw err;
    }
  }
}
