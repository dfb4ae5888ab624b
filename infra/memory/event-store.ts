import type { LineageEvent, StoredEvent } from '../../domain/lineage/events';
import { ConcurrencyError, type EventStore, type LoadedStream } from '../../domain/shared/ports';

/** An in-memory event store with the same contract as the JetStream one (tests, tools). */
export class InMemoryEventStore implements EventStore {
  private seq = 0;
  private readonly streams = new Map<
    string,
    { seq: number; decisionId: string; events: readonly StoredEvent<LineageEvent>[] }[]
  >();

  async load(lineageId: string, fromVersion = 0): Promise<LoadedStream> {
    const entries = (this.streams.get(lineageId) ?? []).filter((e) => e.seq > fromVersion);
    const last = this.streams.get(lineageId)?.at(-1);
    return { events: entries.flatMap((e) => e.events), version: Math.max(last?.seq ?? 0, fromVersion) };
  }

  async append(
    lineageId: string,
    events: readonly StoredEvent<LineageEvent>[],
    expectedVersion: number,
    decisionId: string,
  ): Promise<{ version: number; duplicate: boolean }> {
    const entries = this.streams.get(lineageId) ?? [];
    const last = entries.at(-1);
    const dup = entries.find((e) => e.decisionId === decisionId);
    if ((last?.seq ?? 0) !== expectedVersion) {
      if (last && last.decisionId === decisionId) return { version: last.seq, duplicate: true };
      throw new ConcurrencyError(lineageId, expectedVersion);
    }
    if (dup) return { version: dup.seq, duplicate: true };
    this.seq += 1;
    entries.push({ seq: this.seq, decisionId, events });
    this.streams.set(lineageId, entries);
    return { version: this.seq, duplicate: false };
  }
}
