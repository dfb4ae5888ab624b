import {
  type Appended,
  ConcurrencyError,
  type EventStore,
  type LoadedStream,
} from '../../domain/shared/ports';

/** An in-memory event store with the same contract as the JetStream ones (tests, tools). */
export class InMemoryEventStore<E> implements EventStore<E> {
  /** One sequence over every stream, as a JetStream stream numbers its messages. */
  private seq = 0;
  private readonly streams = new Map<string, { seq: number; decisionId: string; events: readonly E[] }[]>();

  async load(streamId: string, fromVersion = 0): Promise<LoadedStream<E>> {
    const entries = (this.streams.get(streamId) ?? []).filter((e) => e.seq > fromVersion);
    const last = this.streams.get(streamId)?.at(-1);
    return { events: entries.flatMap((e) => e.events), version: Math.max(last?.seq ?? 0, fromVersion) };
  }

  async append(
    streamId: string,
    events: readonly E[],
    expectedVersion: number,
    decisionId: string,
  ): Promise<Appended> {
    const entries = this.streams.get(streamId) ?? [];
    const last = entries.at(-1);
    const dup = entries.find((e) => e.decisionId === decisionId);
    if ((last?.seq ?? 0) !== expectedVersion) {
      if (last && last.decisionId === decisionId) return { version: last.seq, duplicate: true };
      throw new ConcurrencyError(streamId, expectedVersion);
    }
    if (dup) return { version: dup.seq, duplicate: true };
    this.seq += 1;
    entries.push({ seq: this.seq, decisionId, events });
    this.streams.set(streamId, entries);
    return { version: this.seq, duplicate: false };
  }
}
