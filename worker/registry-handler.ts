import {
  type RegistryCommand,
  type RegistryView,
  decideRegistry,
  registryView,
} from '../domain/registry/decide';
import { type RegistryKey, registryId } from '../domain/registry/events';
import { type RegistryState, evolveRegistry, initialRegistryState } from '../domain/registry/state';
import { DomainError } from '../domain/shared/errors';
import { type EventStore, isConcurrencyError } from '../domain/shared/ports';
import type { StoredRegistryEvent } from '../infra/nats/registry-events';
import { type CommandMeta, stamp } from './handler';

type Cached = { state: RegistryState; version: number };

export type RegistryResult = Readonly<{
  registry_id: string;
  events: readonly StoredRegistryEvent[];
  version: number;
  state: RegistryState;
}>;

/**
 * Load → decide → append for registry entries, with the same optimistic concurrency as lineages:
 * two workers enrolling the first two devices of a new hash at once both decide on version 0;
 * one append wins, the other reloads, sees the review already open, and only enrolls.
 */
export class RegistryCommandHandler {
  private readonly cache = new Map<string, Cached>();

  constructor(
    private readonly store: EventStore<StoredRegistryEvent>,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  async load(id: string, fresh = false): Promise<Cached> {
    const base = (fresh ? undefined : this.cache.get(id)) ?? { state: initialRegistryState(), version: 0 };
    const tail = await this.store.load(id, base.version);
    const next = { state: tail.events.reduce(evolveRegistry, base.state), version: tail.version };
    this.cache.set(id, next);
    if (this.cache.size > 10_000) this.cache.delete(this.cache.keys().next().value!);
    return next;
  }

  /**
   * What a lineage's decision needs of the entry for `key`. An approved or rejected entry never
   * changes its decision, so it is answered from memory; an undecided one is re-read (one direct
   * get of the subject's head when nothing changed).
   */
  async view(key: RegistryKey): Promise<RegistryView> {
    const id = registryId(key);
    const cached = this.cache.get(id);
    if (cached?.state.status === 'registered' && cached.state.decision)
      return registryView(key, cached.state);
    return registryView(key, (await this.load(id)).state);
  }

  async execute(id: string, command: RegistryCommand, meta: CommandMeta): Promise<RegistryResult> {
    let current = this.cache.get(id) ?? (await this.load(id));
    for (let attempt = 0; ; attempt++) {
      const { state } = current;
      if (meta.project_id && state.status === 'registered' && state.project_id !== meta.project_id) {
        throw new DomainError('not_found', 'registry entry not found');
      }
      const events = decideRegistry(command, state);
      if (events.length === 0) return { registry_id: id, events: [], version: current.version, state };
      const stored = stamp(events, meta, this.clock()) as StoredRegistryEvent[];
      try {
        const r = await this.store.append(id, stored, current.version, meta.decision_id);
        if (r.duplicate) {
          const reloaded = await this.load(id, true);
          return { registry_id: id, events: [], version: reloaded.version, state: reloaded.state };
        }
        const next = { state: stored.reduce<RegistryState>(evolveRegistry, state), version: r.version };
        this.cache.set(id, next);
        return { registry_id: id, events: stored, version: r.version, state: next.state };
      } catch (err) {
        if (!isConcurrencyError(err) || attempt >= 20) throw err;
        current = await this.load(id);
      }
    }
  }
}
