import {
  type RegistryCommand,
  type RegistryView,
  decideRegistry,
  registryView,
} from '../domain/registry/decide';
import { type RegistryKey, registryId } from '../domain/registry/events';
import { type RegistryState, evolveRegistry, initialRegistryState } from '../domain/registry/state';
import type { EventStore } from '../domain/shared/ports';
import type { Metrics } from '../infra/metrics';
import type { StoredRegistryEvent } from '../infra/nats/registry-events';
import {
  AggregateHandler,
  type CommandMeta,
  type ConflictRetry,
  type Folded,
  StateCache,
  assertInProject,
  stamp,
} from './aggregate-handler';

export type RegistryResult = Readonly<{
  registry_id: string;
  events: readonly StoredRegistryEvent[];
  version: number;
  state: RegistryState;
}>;

export type RegistryCommandHandlerOptions = Readonly<{
  /** The clock of decisions: what the events' `occurred_at` is read from. */
  clock?: () => Date;
  /** `conflicts` counts the decisions retried after a concurrency conflict. */
  metrics?: Metrics;
  retry?: ConflictRetry;
}>;

/**
 * Load → decide → append for registry entries, with the same optimistic concurrency as lineages:
 * two workers enrolling the first two devices of a new hash at once both decide on version 0;
 * one append wins, the other reloads, sees the review already open, and only enrolls.
 */
export class RegistryCommandHandler {
  readonly clock: () => Date;
  private readonly core: AggregateHandler<RegistryState, StoredRegistryEvent>;

  constructor(store: EventStore<StoredRegistryEvent>, opts: RegistryCommandHandlerOptions = {}) {
    this.clock = opts.clock ?? (() => new Date());
    this.core = new AggregateHandler({
      store,
      evolve: evolveRegistry,
      initialState: initialRegistryState,
      cache: new StateCache<RegistryState>(),
      metrics: opts.metrics,
      retry: opts.retry,
    });
  }

  load(id: string, fresh = false): Promise<Folded<RegistryState>> {
    return this.core.load(id, fresh);
  }

  /**
   * What a lineage's decision needs of the entry for `key`. An approved or rejected entry never
   * changes its decision, so it is answered from memory; an undecided one is re-read (one direct
   * get of the subject's head when nothing changed).
   */
  async view(key: RegistryKey): Promise<RegistryView> {
    const id = registryId(key);
    const cached = this.core.cached(id);
    if (cached?.state.status === 'registered' && cached.state.decision)
      return registryView(key, cached.state);
    return registryView(key, (await this.core.load(id)).state);
  }

  async execute(id: string, command: RegistryCommand, meta: CommandMeta): Promise<RegistryResult> {
    const at = meta.now ?? this.clock().toISOString();
    const r = await this.core.decide(id, (state) => {
      assertInProject(state, meta, 'registry entry');
      return {
        events: stamp(decideRegistry(command, state), meta, at),
        decision_id: meta.decision_id,
        result: null,
      };
    });
    return { registry_id: id, events: r.events, version: r.version, state: r.state };
  }
}
