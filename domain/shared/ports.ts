import type { LineageEvent, StoredEvent } from '../lineage/events';

/** What one append of a lineage holds: every event of one decision, atomically. */
export type LineageCommit = Readonly<{ lineage_id: string; events: readonly StoredEvent<LineageEvent>[] }>;

export type LoadedStream = Readonly<{
  events: readonly StoredEvent<LineageEvent>[];
  /** Opaque position of the last append (0 = nothing yet); quoted back to `append`. */
  version: number;
}>;

export class ConcurrencyError extends Error {
  override readonly name = 'ConcurrencyError';
  constructor(
    readonly streamId: string,
    readonly expected: number,
  ) {
    super(`stream ${streamId} moved past version ${expected}`);
  }
}
export const isConcurrencyError = (e: unknown): e is ConcurrencyError => e instanceof ConcurrencyError;

/** The event store port: one stream per lineage, optimistic concurrency on its version. */
export interface EventStore {
  load(lineageId: string, fromVersion?: number): Promise<LoadedStream>;
  /**
   * Append one decision. `expectedVersion` is the version the decision was made on; `decisionId`
   * makes a retried append idempotent. Throws ConcurrencyError when the stream moved on.
   */
  append(
    lineageId: string,
    events: readonly StoredEvent<LineageEvent>[],
    expectedVersion: number,
    decisionId: string,
  ): Promise<{ version: number; duplicate: boolean }>;
}
