import type { SchemaObserve } from '../protocol/contracts';
import type { LineageEvent } from './events';
import { register } from './lifecycle';
import type { LineageState } from './state';

/** `ObserveSchema`: a device's sync/schema/observe, as the worker hands it to the lineage. */
export type ObserveSchemaData = Readonly<{
  project_id: string;
  device_id: string;
  device_name: string;
  topic_slug?: string;
  new_lineage_id: string;
  observe: SchemaObserve;
  now: string;
}>;

/**
 * Record an observation. It is advisory: it never classifies, reviews, pauses or stages (a
 * batch's schema_hash does that); it only keeps the last schema the device announced, visible
 * through the lineage. The first sight of a table (the agent observes before its first batch)
 * registers the lineage, of the kind its capture_strategy names (rows when absent, the reference
 * product's shape). The same observation again records nothing.
 */
export function decideObserveSchema(state: LineageState, d: ObserveSchemaData): readonly LineageEvent[] {
  const o = d.observe;
  const kind = o.capture_strategy === 'sqlite_telemetry_batch_v1' ? 'telemetry' : 'rows';
  const events = register(state, d, o.source_table, kind);
  if (state.status === 'registered') {
    const last = state.observed_schema;
    // Nothing new: the same hash, and no columns where the record has them (or none at all).
    if (last?.schema_hash === o.schema_hash && (last.schema_columns !== null || !o.schema_columns)) return [];
  }
  events.push({
    type: 'SchemaObserved',
    data: { schema_hash: o.schema_hash, schema_columns: o.schema_columns ?? null, observed_at: d.now },
  });
  return events;
}
