/** What every lineage rule builds on: the registered lineage, and events folded as they are decided. */
import { DomainError, type DomainErrorCode } from '../shared/errors';
import type { LineageEvent } from './events';
import {
  type ActiveLineage,
  type LineageState,
  type RowsLineage,
  type TelemetryLineage,
  evolve,
} from './state';

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

/**
 * A rows lineage, for the rules only rows lineages have. A lineage of the other kind refuses the
 * command with `code` before anything is decided, so its state stays as it was.
 */
export function requireRows(
  state: LineageState,
  code: DomainErrorCode = 'illegal_transition',
  why = 'the command needs a lineage of row changes',
): RowsLineage {
  const s = requireLineage(state);
  if (s.kind === 'rows') return s;
  throw new DomainError(code, `${s.source_table} is a telemetry lineage; ${why}`, {
    lineage_id: s.lineage_id,
    kind: s.kind,
  });
}

/** A telemetry lineage; a rows lineage refuses the command (`illegal_transition`) unchanged. */
export function requireTelemetry(
  state: LineageState,
  why = 'the command needs a telemetry lineage',
): TelemetryLineage {
  const s = requireLineage(state);
  if (s.kind === 'telemetry') return s;
  throw new DomainError('illegal_transition', `${s.source_table} is a rows lineage; ${why}`, {
    lineage_id: s.lineage_id,
    kind: s.kind,
  });
}

export function apply(state: LineageState, events: readonly LineageEvent[]): LineageState {
  return events.reduce(evolve, state);
}

/** Append `more` to `events`, and return the state they lead to. */
export function push<S extends ActiveLineage>(
  state: S,
  events: LineageEvent[],
  more: readonly LineageEvent[],
): S {
  events.push(...more);
  const next = requireLineage(apply(state, more));
  // A lineage's kind is set when it is registered and never changes, so the fold keeps S's kind.
  return next as S;
}
