/** A lineage's life: registered by the first batch or observation, assigned to a fleet, deleted. */
import { DomainError } from '../shared/errors';
import { type Identity, requireLineage } from './common';
import type { LineageEvent, LineageKind } from './events';
import type { ActiveLineage, LineageState } from './state';

export function register(
  state: LineageState,
  d: Identity & { new_lineage_id: string },
  source_table: string,
  kind: LineageKind,
): LineageEvent[] {
  if (state.status === 'registered') return [];
  if (state.status === 'deleted')
    throw new DomainError('lineage_deleted', `lineage ${state.lineage_id} was deleted`);
  return [
    {
      type: 'LineageRegistered',
      data: {
        lineage_id: d.new_lineage_id,
        project_id: d.project_id,
        device_id: d.device_id,
        device_name: d.device_name,
        source_table,
        kind,
        ...(d.topic_slug !== undefined ? { topic_slug: d.topic_slug } : {}),
      },
    },
  ];
}

export function fleetEvents(s: ActiveLineage, fleet: string | null | undefined): LineageEvent[] {
  if (fleet === undefined || (s.fleet_id ?? null) === fleet) return [];
  return [{ type: 'LineageFleetAssigned', data: { fleet_id: fleet } }];
}

export function decideAssignFleet(state: LineageState, d: { fleet_id: string | null }): LineageEvent[] {
  return fleetEvents(requireLineage(state), d.fleet_id);
}

export function decideDelete(state: LineageState, d: { reason: string }): LineageEvent[] {
  requireLineage(state);
  return [{ type: 'LineageDeleted', data: { reason: d.reason } }];
}
