import { type JetStreamClient, type JetStreamManager, JetStreamApiError } from '@nats-io/jetstream';
import { type Appended, ConcurrencyError, type LoadedStream } from '../../domain/shared/ports';

const WRONG_LAST_SEQUENCE = 10071;

/** One stored decision of an aggregate: its stream sequence (the version after it), time and events. */
export type SubjectCommit<E> = Readonly<{ seq: number; time: string; events: readonly E[] }>;

export type SubjectLogOptions<E> = Readonly<{
  stream: string;
  /** The aggregate's own subject (ids only: no device or table name reaches a subject). */
  subjectOf: (id: string) => string;
  /** The message body of one decision, `{<aggregate>_id, events}`. */
  encode: (id: string, events: readonly E[]) => Uint8Array;
  decode: (data: Uint8Array) => Readonly<{ events: readonly E[] }>;
  /** What to call the aggregate in an error message. */
  what: string;
}>;

/**
 * An event-sourced aggregate per subject of one JetStream stream: one message per decision, the
 * subject's last sequence as the version for optimistic concurrency, msg-id dedupe of retried
 * appends. Lineages and registry entries are both stored this way; the JetStream error codes are
 * mapped here and nowhere else.
 */
export class SubjectLog<E> {
  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly o: SubjectLogOptions<E>,
  ) {}

  async lastVersion(id: string): Promise<{ seq: number; msgId: string | undefined }> {
    const m = await this.jsm.streams.getMessage(this.o.stream, { last_by_subj: this.o.subjectOf(id) });
    if (!m) return { seq: 0, msgId: undefined };
    return { seq: m.seq, msgId: m.header?.get('Nats-Msg-Id') || undefined };
  }

  /** Every event after `fromVersion`, and the version they lead to (the event store's `load`). */
  async load(id: string, fromVersion = 0): Promise<LoadedStream<E>> {
    const commits = await this.readCommits(id, { fromVersion });
    return { events: commits.flatMap((c) => c.events), version: commits.at(-1)?.seq ?? fromVersion };
  }

  /**
   * The commits after `fromVersion`, in order; at most `limit` of them (all when omitted).
   *
   * Read message by message with direct gets (`next_by_subj`), which any replica of an R3 stream
   * answers without the meta leader: no consumer is created per load, so a cold load or a retried
   * decision still reads while a node is down. A replica may lag the leader, so the head comes from
   * the leader (`lastVersion`) and a short direct read is finished through the stream leader.
   */
  async readCommits(
    id: string,
    opts: { fromVersion?: number; limit?: number } = {},
  ): Promise<SubjectCommit<E>[]> {
    const fromVersion = opts.fromVersion ?? 0;
    const limit = opts.limit ?? Number.POSITIVE_INFINITY;
    const head = await this.lastVersion(id);
    if (head.seq <= fromVersion || limit <= 0) return [];
    const subject = this.o.subjectOf(id);
    const commits: SubjectCommit<E>[] = [];
    let version = fromVersion;
    while (version < head.seq && commits.length < limit) {
      const query = { seq: version + 1, next_by_subj: subject };
      const m =
        (await this.jsm.direct.getMessage(this.o.stream, query)) ??
        // The leader's MSG.GET takes the same query; a lagging replica answered "not found".
        (await this.jsm.streams.getMessage(this.o.stream, query as unknown as { seq: number }));
      if (!m || m.seq <= version || m.seq > head.seq) {
        throw new Error(`${this.o.what} store: could not read ${id} up to ${head.seq}`);
      }
      commits.push({ seq: m.seq, time: m.time.toISOString(), events: this.o.decode(m.data).events });
      version = m.seq;
    }
    return commits;
  }

  async append(
    id: string,
    events: readonly E[],
    expectedVersion: number,
    decisionId: string,
  ): Promise<Appended> {
    // JetStream dedupes msg-ids across the whole stream; a decision id is unique per aggregate only.
    const msgID = `${id}:${decisionId}`;
    try {
      const ack = await this.js.publish(this.o.subjectOf(id), this.o.encode(id, events), {
        msgID,
        expect: { lastSubjectSequence: expectedVersion },
      });
      return { version: ack.seq, duplicate: ack.duplicate };
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === WRONG_LAST_SEQUENCE) {
        // The server checks the expected sequence before msg-id dedupe: a retry of an append
        // whose ack was lost lands here. If the head is our own decision, it is already durable.
        const head = await this.lastVersion(id);
        if (head.msgId === msgID) return { version: head.seq, duplicate: true };
        throw new ConcurrencyError(id, expectedVersion);
      }
      throw err;
    }
  }
}
