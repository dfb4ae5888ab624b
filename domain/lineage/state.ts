/**
 * A lineage's state: the fold of its events. The shape and its queries are in state-types.ts;
 * a registered lineage folds by its kind (evolve-rows.ts, evolve-telemetry.ts), over what every
 * lineage folds (evolve-shared.ts).
 */
import { assertNever } from '../shared/decider';
import type { LineageEvent } from './events';
import { evolveRows } from './evolve-rows';
import { evolveTelemetry } from './evolve-telemetry';
import { type ActiveLineage, type LineageBase, type LineageState, NO_WRITE_BACK } from './state-types';

export * from './state-types';

type Registered = Extract<LineageEvent, { type: 'LineageRegistered' }>['data'];

function registered(d: Registered): ActiveLineage {
  const base: LineageBase = {
    status: 'registered',
    lineage_id: d.lineage_id,
    project_id: d.project_id,
    device_id: d.device_id,
    device_name: d.device_name,
    source_table: d.source_table,
    pause_reasons: [],
    schemas: {},
    classifications: {},
    approved_hash: null,
    bindings: [],
    reviews: [],
    unbound_columns: [],
    observed_schema: null,
    batch_digests: [],
    staged_rows: 0,
    staged_bytes: 0,
    replaying_rows: 0,
    replaying_bytes: 0,
    materialized_rows: 0,
    replay: null,
    consecutive_failures: 0,
    reported_failures: [],
    controls: [],
    device_paused: false,
    topic_slug: d.topic_slug ?? null,
    awaiting: {},
    coalesced: null,
    fleet_id: null,
  };
  switch (d.kind) {
    case 'rows':
      return {
        ...base,
        kind: 'rows',
        accepted: {},
        last_epoch: null,
        last_commit_seq: 0,
        refused_rows: 0,
        refused_by_code: {},
        write_back: NO_WRITE_BACK,
        uploads: [],
        schema_resync: null,
        resyncs: [],
        verifies: [],
      };
    case 'telemetry':
      return { ...base, kind: 'telemetry', last_batch_seq: 0, recent_batches: [], data_points: {} };
    default:
      return assertNever(d.kind, 'lineage kind');
  }
}

export function evolve(state: LineageState, event: LineageEvent): LineageState {
  if (event.type === 'LineageRegistered') return registered(event.data);
  if (state.status !== 'registered') return state;
  if (event.type === 'LineageDeleted') return { status: 'deleted', lineage_id: state.lineage_id };
  switch (state.kind) {
    case 'rows':
      return evolveRows(state, event);
    case 'telemetry':
      return evolveTelemetry(state, event);
    default:
      return assertNever(state, 'lineage kind');
  }
}
