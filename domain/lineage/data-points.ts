/**
 * Data points (docs/telemetry.md): a named, typed series of one device table. A telemetry
 * approval binds columns to them: `map` to a data point the device table has, and
 * `auto_create_and_map` to one it has or, when policy `allow_auto_create_device_data_points`
 * allows, one it creates. A binding that finds no data point holds the lineage (`data_points`
 * pause, rows staged) with a reason a person can act on.
 */
import type { Policy } from '../policy/policy';
import type { DataPoint, LineageEvent } from './events';
import type { TelemetryLineage } from './state';

export type DataPointPlan = Readonly<{ created: readonly DataPoint[]; missing: readonly string[] }>;

type Flag = Pick<Policy, 'allow_auto_create_device_data_points'> | undefined;

/** What the lineage's bindings need: data points to create, and why others cannot be bound. */
export function planDataPoints(s: TelemetryLineage, policy: Flag): DataPointPlan {
  const allowed = policy?.allow_auto_create_device_data_points ?? false;
  const created: DataPoint[] = [];
  const missing: string[] = [];
  for (const b of s.bindings) {
    if ((b.action !== 'map' && b.action !== 'auto_create_and_map') || b.target === null) continue;
    const have = s.data_points[b.target];
    if (have) {
      if (have.affinity !== b.affinity) {
        missing.push(
          `column ${JSON.stringify(b.column)}: data point ${JSON.stringify(b.target)} holds ${have.affinity} values, the column is ${b.affinity}`,
        );
      }
      continue;
    }
    if (b.action === 'map') {
      missing.push(
        `column ${JSON.stringify(b.column)}: map binds data point ${JSON.stringify(b.target)}, which this device table does not have (auto_create_and_map creates it)`,
      );
    } else if (!allowed) {
      missing.push(
        `column ${JSON.stringify(b.column)}: auto_create_and_map needs data point ${JSON.stringify(b.target)}, and policy allow_auto_create_device_data_points is false`,
      );
    } else if (!created.some((p) => p.name === b.target)) {
      created.push({ name: b.target, column: b.column, affinity: b.affinity, action: b.action });
    }
  }
  return { created, missing };
}

const ADVICE =
  'Rows are kept staged. Set allow_auto_create_device_data_points (PATCH /policy) and the next batch creates the data points, ' +
  'or reopen the review and bind the column with another action.';

/**
 * Events that bring the lineage's data points in line with its bindings: the ones to create,
 * then the `data_points` pause (something missing) or its end (nothing missing any more).
 */
export function dataPointEvents(s: TelemetryLineage, policy: Flag): LineageEvent[] {
  const plan = planDataPoints(s, policy);
  const events: LineageEvent[] = [];
  if (plan.created.length > 0)
    events.push({ type: 'DataPointsCreated', data: { data_points: plan.created } });
  const paused = s.pause_reasons.includes('data_points');
  if (plan.missing.length > 0 && !paused) {
    events.push({
      type: 'LineagePaused',
      data: { reason: 'data_points', detail: `${plan.missing.join('; ')}. ${ADVICE}` },
    });
  }
  if (plan.missing.length === 0 && paused) {
    events.push({ type: 'LineageResumed', data: { reason: 'data_points' } });
  }
  return events;
}
