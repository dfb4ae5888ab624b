/**
 * Telemetry rules of the lineage decider: a telemetry batch (governed like a row batch, by a
 * review of its own or, with coalescing on, by the registry entry of its scope), and the data
 * points its approval binds (docs/telemetry.md).
 */
import type { TelemetryBatch } from '../protocol/contracts';
import type { Policy } from '../policy/policy';
import type { RegistryView } from '../registry/view';
import { DomainError } from '../shared/errors';
import { type Identity, type Minted, apply, push, requireTelemetry } from './common';
import { dataPointEvents, planDataPoints } from './data-points';
import type { LineageEvent } from './events';
import { governSchema } from './governance';
import { checkBatchIdentity, intake } from './intake';
import { fleetEvents, register } from './lifecycle';
import { releaseLeftovers, stagingReason } from './staging';
import type { LineageState } from './state';

export type IngestTelemetryBatchData = Identity &
  Minted & {
    batch: TelemetryBatch;
    new_lineage_id: string;
    new_review_id: string;
    policy: Policy;
    fleet_id?: string | null;
    payload_digest?: string;
    registry?: RegistryView;
  };

export function decideTelemetryBatch(state: LineageState, cmd: IngestTelemetryBatchData): LineageEvent[] {
  const { batch } = cmd;
  const events = register(state, cmd, batch.source_table, 'telemetry');
  // The table's lineage captures row changes: the batch is refused and nothing of it is decided.
  let s = requireTelemetry(apply(state, events), 'a telemetry batch cannot enter it');
  checkBatchIdentity(s, batch.batch_id, cmd.payload_digest);
  s = push(s, events, fleetEvents(s, cmd.fleet_id));
  if (batch.batch_seq <= s.last_batch_seq) {
    const recorded = s.recent_batches.find(([seq]) => seq === batch.batch_seq);
    if (recorded?.[1] === batch.batch_id) return events; // same id + seq: acknowledged no-op
    if (recorded) {
      throw new DomainError(
        'duplicate_batch_seq',
        `batch_seq ${batch.batch_seq} was already used by batch ${recorded[1]}`,
      );
    }
    throw new DomainError(
      'stale_batch_seq',
      `batch_seq ${batch.batch_seq} is below the last accepted ${s.last_batch_seq}`,
    );
  }
  s = push(
    s,
    events,
    governSchema(s, batch.schema_hash, batch.schema_columns, cmd.new_review_id, cmd.policy, cmd.registry),
  );
  // An approval taken in this decision, or a policy that now allows creating what was missing.
  s = push(s, events, dataPointEvents(s, cmd.policy));
  const reason =
    stagingReason(s, batch.schema_hash) ??
    (s.pause_reasons.includes('data_points') ? 'lineage_paused' : null);
  const common = {
    batch_id: batch.batch_id,
    batch_seq: batch.batch_seq,
    schema_hash: batch.schema_hash,
    rows: batch.rows,
    ...(cmd.payload_digest !== undefined ? { payload_digest: cmd.payload_digest } : {}),
  };
  return intake(
    s,
    events,
    cmd,
    reason,
    (r) => ({ type: 'TelemetryStaged', data: { ...common, reason: r } }),
    {
      type: 'TelemetryAccepted',
      data: common,
    },
  );
}

/**
 * After an approval (a review of the lineage's own, or a registry entry's): create the data
 * points its bindings may create, and hold the staged rows while any binding finds none.
 */
export function withDataPoints(
  state: LineageState,
  decided: readonly LineageEvent[],
  d: Readonly<{ policy?: Policy; replay_id: string }>,
): LineageEvent[] {
  const after = apply(state, decided);
  if (after.status !== 'registered' || after.kind !== 'telemetry' || decided.length === 0)
    return [...decided];
  const plan = planDataPoints(after, d.policy);
  const wasPaused = after.pause_reasons.includes('data_points');
  if (plan.created.length === 0 && plan.missing.length === 0 && !wasPaused) return [...decided];
  // The release is decided again below, once the data points are settled.
  const events = decided.filter((e) => e.type !== 'StagedRowsReleased');
  let s = requireTelemetry(apply(state, events));
  s = push(s, events, dataPointEvents(s, d.policy));
  push(s, events, releaseLeftovers(s, d.replay_id));
  return events;
}
