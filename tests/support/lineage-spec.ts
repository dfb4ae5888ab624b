/**
 * Given / when / then over the lineage decider: the ids, time and commands every lineage rule
 * test starts from. The tables the rows come from are in lineage-rows.ts and lineage-exact.ts.
 */
import { type LineageCommand, lineageDecider } from '../../domain/lineage/decide';
import type { ColumnAction, LineageEvent } from '../../domain/lineage/events';
import type { ActiveLineage, RowsLineage, TelemetryLineage } from '../../domain/lineage/state';
import { fold } from '../../domain/shared/decider';
import { deciderSpec } from './decider-spec';

export const spec = deciderSpec(lineageDecider);

export const L = '0190a000-0000-7000-8000-0000000000aa';
export const R1 = '0190a000-0000-7000-8000-0000000000b1';
export const R2 = '0190a000-0000-7000-8000-0000000000b2';
export const EPOCH = '0190a000-0000-7000-8000-0000000000e1';
/** The replay id `approve` gives an approval. */
const REPLAY = '0190a000-0000-7000-8000-0000000000f1';
export const DEVICE = { project_id: 'p', device_id: 'd', device_name: 'gw-1' };
export const NOW = '2026-11-22T00:00:00.000Z';
/** The ids and time a command handler mints for the decider. */
export const MINT = {
  new_control_id: '0190a000-0000-7000-8000-0000000000c1',
  new_replay_id: '0190a000-0000-7000-8000-0000000000f2',
  now: NOW,
};

/** The events of these commands, each decided on the events before it. */
export function history(...cmds: LineageCommand[]): LineageEvent[] {
  const out: LineageEvent[] = [];
  for (const c of cmds) out.push(...spec.given(out).when(c).events());
  return out;
}

export const stateOf = (events: readonly LineageEvent[]) => fold(lineageDecider, events) as ActiveLineage;

/** The state of a rows lineage; fails the test if the events made another. */
export function rowsStateOf(events: readonly LineageEvent[]): RowsLineage {
  const s = stateOf(events);
  if (s.kind !== 'rows') throw new Error(`expected a rows lineage, got ${s.kind}`);
  return s;
}

/** The state of a telemetry lineage; fails the test if the events made another. */
export function telemetryStateOf(events: readonly LineageEvent[]): TelemetryLineage {
  const s = stateOf(events);
  if (s.kind !== 'telemetry') throw new Error(`expected a telemetry lineage, got ${s.kind}`);
  return s;
}

export const claim = (v = 1, review = R1): LineageCommand => ({
  type: 'ClaimReview',
  data: { review_id: review, action_version: v },
});

export const approve = (v = 2, column_actions?: ColumnAction[], review = R1): LineageCommand => ({
  type: 'ApproveReview',
  data: {
    review_id: review,
    action_version: v,
    replay_id: REPLAY,
    ...(column_actions ? { column_actions } : {}),
  },
});
