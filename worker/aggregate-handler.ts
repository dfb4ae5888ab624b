import { backOff } from 'exponential-backoff';
import { uuidv7 } from 'uuidv7';
import type { EventMetadata, StoredEvent } from '../domain/lineage/events';
import { DomainError } from '../domain/shared/errors';
import { type EventStore, isConcurrencyError } from '../domain/shared/ports';
import type { Metrics } from '../infra/metrics';

export type CommandMeta = Readonly<{
  /** Makes a retried decision idempotent (ingress: `<device>:<batch_id>`; API: the idempotency key). */
  decision_id: string;
  correlation_id?: string;
  causation_id?: string;
  actor?: string;
  /** When set, the aggregate must belong to this project (operators never reach other projects). */
  project_id?: string;
  /**
   * When the decision is made (ISO-8601): the `now` the command carries, so its events'
   * `occurred_at` is the same time. Without it the handler's clock is read once per call.
   */
  now?: string;
}>;

/** Every event of one decision gets its id, one time and the decision's causation metadata. */
export function stamp<E extends object>(
  events: readonly E[],
  meta: CommandMeta,
  at: string,
): StoredEvent<E>[] {
  const metadata: EventMetadata = {
    causation_id: meta.causation_id ?? meta.decision_id,
    correlation_id: meta.correlation_id ?? meta.decision_id,
    ...(meta.actor ? { actor: meta.actor } : {}),
  };
  return events.map((e) => ({ ...e, id: uuidv7(), occurred_at: at, metadata }));
}

/** An operator scoped to a project sees no aggregate of another one. */
export function assertInProject(
  state: Readonly<{ status: string; project_id?: string }>,
  meta: CommandMeta,
  what: string,
): void {
  if (meta.project_id && state.status === 'registered' && state.project_id !== meta.project_id) {
    throw new DomainError('not_found', `${what} not found`);
  }
}

/** A folded aggregate, and how many events were folded since its last snapshot. */
export type Folded<S> = Readonly<{ state: S; version: number; sinceSnapshot: number }>;

/** A bounded LRU of folded states, so hot aggregates are not reloaded for every decision. */
export class StateCache<S> {
  private readonly map = new Map<string, Folded<S>>();
  constructor(private readonly max = 10_000) {}
  get(id: string): Folded<S> | undefined {
    const v = this.map.get(id);
    if (v) {
      this.map.delete(id);
      this.map.set(id, v);
    }
    return v;
  }
  set(id: string, v: Folded<S>): void {
    this.map.delete(id);
    this.map.set(id, v);
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value!);
  }
  delete(id: string): void {
    this.map.delete(id);
  }
}

/** Where folded states are kept between processes (lineages: infra/nats/snapshots.ts). */
export type StateSnapshots<S> = Readonly<{
  get(id: string): Promise<Readonly<{ state: S; version: number }> | undefined>;
  put(id: string, snapshot: Readonly<{ state: S; version: number }>): Promise<void>;
}>;

/** What a decision on the current state wants appended, and what its caller gets back. */
export type Decision<E, T, S = unknown> = Readonly<{
  events: readonly E[];
  decision_id: string;
  result: T;
  /**
   * The state after `events`, when the decision folded them already (commands decided one after
   * another on the state the ones before left): the handler then does not fold them again.
   */
  state?: S;
}>;

export type Decided<S, E, T> = Readonly<{
  result: T;
  /** What this call appended: none when nothing was decided or the append was a retried one. */
  events: readonly E[];
  state: S;
  version: number;
  /** The same decision was appended before (its ack was lost); `state` is what is durable. */
  duplicate: boolean;
}>;

/**
 * How a decision that lost a race is retried: again on the reloaded state, after an exponential
 * delay with full jitter, so writers that collided do not collide again in step.
 */
export type ConflictRetry = Readonly<{ retries: number; firstDelayMs: number; maxDelayMs: number }>;
export const CONFLICT_RETRY: ConflictRetry = { retries: 20, firstDelayMs: 5, maxDelayMs: 500 };

export type AggregateHandlerOptions<S, E> = Readonly<{
  store: EventStore<E>;
  evolve: (state: S, event: E) => S;
  initialState: () => S;
  cache?: StateCache<S>;
  snapshots?: StateSnapshots<S>;
  /** Events between snapshots: a cold load folds about this many events after the snapshot. */
  snapshotEvery?: number;
  /** `conflicts` counts the decisions retried after a concurrency conflict. */
  metrics?: Metrics;
  retry?: ConflictRetry;
}>;

/**
 * Load → decide → append with the version the decision was made on, for any event-sourced
 * aggregate. On a concurrency conflict the aggregate is reloaded from where the cache stood and
 * decided again; any other error ends the call.
 */
export class AggregateHandler<S, E> {
  private readonly cache: StateCache<S>;

  constructor(private readonly o: AggregateHandlerOptions<S, E>) {
    this.cache = o.cache ?? new StateCache<S>();
  }

  /** The aggregate as this handler last folded it, if it is still cached. */
  cached(id: string): Folded<S> | undefined {
    return this.cache.get(id);
  }

  /** Fold the events after the cached state (or a snapshot); `fresh` ignores the cache. */
  async load(id: string, fresh = false): Promise<Folded<S>> {
    const cached = fresh ? undefined : this.cache.get(id);
    const snap = cached ? undefined : await this.o.snapshots?.get(id);
    const base: Folded<S> = cached ?? {
      state: snap?.state ?? this.o.initialState(),
      version: snap?.version ?? 0,
      sinceSnapshot: 0,
    };
    const tail = await this.o.store.load(id, base.version);
    const next: Folded<S> = {
      state: tail.events.reduce(this.o.evolve, base.state),
      version: tail.version,
      sinceSnapshot: base.sinceSnapshot + tail.events.length,
    };
    // A decision of this handler may have landed (and been cached) while the tail was read: an
    // older fold must not replace it, or the next decision starts from a stale state.
    const latest = this.cache.get(id);
    if (latest && latest.version > next.version) return latest;
    this.cache.set(id, next);
    return next;
  }

  /**
   * Decide on the aggregate as cached (else loaded) and append what `decision` returns at the
   * version it was decided on. `decision` runs again, on a reloaded state, after each conflict.
   */
  async decide<T>(id: string, decision: (state: S) => Decision<E, T, S>): Promise<Decided<S, E, T>> {
    const retry = this.o.retry ?? CONFLICT_RETRY;
    let attempt = 0;
    return backOff(
      async () => {
        const current = (attempt++ > 0 ? undefined : this.cache.get(id)) ?? (await this.load(id));
        const d = decision(current.state);
        if (d.events.length === 0) {
          return {
            result: d.result,
            events: [],
            state: current.state,
            version: current.version,
            duplicate: false,
          };
        }
        const r = await this.o.store.append(id, d.events, current.version, d.decision_id);
        if (r.duplicate) {
          // The same decision was appended before (its ack was lost): re-read what is durable.
          const reloaded = await this.load(id, true);
          return {
            result: d.result,
            events: [],
            state: reloaded.state,
            version: reloaded.version,
            duplicate: true,
          };
        }
        const next: Folded<S> = {
          state: d.state ?? d.events.reduce(this.o.evolve, current.state),
          version: r.version,
          sinceSnapshot: current.sinceSnapshot + d.events.length,
        };
        this.cache.set(id, next);
        await this.maybeSnapshot(id, next);
        return {
          result: d.result,
          events: d.events,
          state: next.state,
          version: r.version,
          duplicate: false,
        };
      },
      {
        numOfAttempts: retry.retries + 1,
        startingDelay: retry.firstDelayMs,
        timeMultiple: 2,
        maxDelay: retry.maxDelayMs,
        jitter: 'full',
        retry: (err: unknown, failed: number) => {
          if (!isConcurrencyError(err)) return false;
          if (failed <= retry.retries) this.o.metrics?.conflicts.inc();
          return true;
        },
      },
    );
  }

  /** Snapshots are an optimisation: a failed write only means a longer fold next time. */
  private async maybeSnapshot(id: string, f: Folded<S>): Promise<void> {
    const { snapshots, snapshotEvery = Number.POSITIVE_INFINITY } = this.o;
    if (!snapshots || f.sinceSnapshot < snapshotEvery) return;
    try {
      await snapshots.put(id, { version: f.version, state: f.state });
      this.cache.set(id, { ...f, sinceSnapshot: 0 });
    } catch {
      // keep going without it
    }
  }
}
