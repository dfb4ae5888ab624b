/** What a load returns: the stream's events after a version, and the version they lead to. */
export type LoadedStream<E> = Readonly<{
  events: readonly E[];
  /** Opaque position of the last append (0 = nothing yet); quoted back to `append`. */
  version: number;
}>;

export type Appended = Readonly<{ version: number; duplicate: boolean }>;

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

/**
 * The event store port: one stream per aggregate (a lineage, a registry entry), optimistic
 * concurrency on its version. `E` is the stored event of the aggregate.
 */
export interface EventStore<E> {
  /** Events after `fromVersion` (all when omitted); an unknown stream is empty at version 0. */
  load(streamId: string, fromVersion?: number): Promise<LoadedStream<E>>;
  /**
   * Append one decision atomically. `expectedVersion` is the version the decision was made on (0:
   * the stream must not exist yet); `decisionId`, unique within the stream, makes a retried append
   * idempotent (`duplicate: true`, the version it landed at). Throws ConcurrencyError when the
   * stream moved on.
   */
  append(
    streamId: string,
    events: readonly E[],
    expectedVersion: number,
    decisionId: string,
  ): Promise<Appended>;
}
