/** What every lineage rule builds on: the registered lineage, and events folded as they are decided. */
import { DomainError } from '../shared/errors';
import type { LineageEvent } from './events';
import { type ActiveLineage, type LineageState, evolve } from './state';

/** Who sends a batch (or a request): the lineage is registered under this identity. */
export type Identity = Readonly<{
  project_id: string;
  device_id: string;
  device_name: string;
  topic_slug?: string;
}>;

/** Ids and time a decision may need; the caller mints them, so the decider stays pure. */
export type Minted = Readonly<{ new_control_id: string; new_replay_id: string; now: string }>;

export function requireLineage(state: LineageState): ActiveLineage {
  if (state.status === 'registered') return state;
  if (state.status === 'deleted')
    throw new DomainError('lineage_deleted', `lineage ${state.lineage_id} was deleted`);
  throw new DomainError('not_found', 'lineage not found');
}

export function apply(state: LineageState, events: readonly LineageEvent[]): LineageState {
  return events.reduce(evolve, state);
}

/** Append `more` to `events`, and return the state they lead to. */
export function push(
  state: ActiveLineage,
  events: LineageEvent[],
  more: readonly LineageEvent[],
): ActiveLineage {
  events.push(...more);
  return requireLineage(apply(state, more));
}
