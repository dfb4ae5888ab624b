/**
 * How the events every lineage takes fold, whatever it captures: governance (evolve-governance.ts),
 * staging and its replay, materialization failures, controls. The kind's own events fold in
 * evolve-rows.ts and evolve-telemetry.ts.
 */
import { assertNever } from '../shared/decider';
import type { LineageEvent } from './events';
import { type GovernanceEvent, evolveGovernance } from './evolve-governance';
import {
  type ActiveLineage,
  RECENT_BATCH_DIGESTS,
  batchDigestOf,
  failureKey,
  rowsBytes,
} from './state-types';

/** Every event a registered lineage folds; registration and deletion change its status (state.ts). */
export type LiveEvent = Exclude<LineageEvent, { type: 'LineageRegistered' | 'LineageDeleted' }>;

export type SharedEvent =
  | GovernanceEvent
  | Extract<
      LineageEvent,
      {
        type:
          | 'StagedRowsReleased'
          | 'ReplayCompleted'
          | 'MaterializationFailed'
          | 'MaterializationReset'
          | 'ControlIssued'
          | 'ControlDelivered'
          | 'ControlAcknowledged';
      }
    >;

/** The digest a batch id was taken in with, kept for the most recent ids (batch identity). */
export function rememberBatch<S extends ActiveLineage>(s: S, batchId: string, digest: string | undefined): S {
  if (digest === undefined || batchDigestOf(s, batchId) !== undefined) return s;
  const next = [...s.batch_digests, [batchId, digest] as const];
  return {
    ...s,
    batch_digests: next.length > RECENT_BATCH_DIGESTS ? next.slice(-RECENT_BATCH_DIGESTS) : next,
  };
}

export function evolveShared<S extends ActiveLineage>(s: S, event: SharedEvent): S {
  switch (event.type) {
    case 'SchemaVersionObserved':
    case 'SchemaObserved':
    case 'SchemaReviewQueued':
    case 'SchemaReviewClaimed':
    case 'SchemaReviewApproved':
    case 'SchemaReviewRejected':
    case 'SchemaReviewReopened':
    case 'SchemaVersionAdopted':
    case 'RegistryReviewAwaited':
    case 'SchemaApprovedByRegistry':
    case 'LineagePaused':
    case 'LineageResumed':
    case 'LineageFleetAssigned':
      return evolveGovernance(s, event);
    case 'StagedRowsReleased':
      return {
        ...s,
        replay: { replay_id: event.data.replay_id, done: false },
        replaying_rows: s.replaying_rows + s.staged_rows,
        replaying_bytes: s.replaying_bytes + s.staged_bytes,
        staged_rows: 0,
        staged_bytes: 0,
      };
    case 'ReplayCompleted':
      return s.replay?.replay_id === event.data.replay_id
        ? {
            ...s,
            replay: { ...s.replay, done: true },
            materialized_rows: s.materialized_rows + s.replaying_rows,
            replaying_rows: 0,
            replaying_bytes: 0,
          }
        : s;
    case 'MaterializationFailed':
      return {
        ...s,
        consecutive_failures: event.data.consecutive_failures,
        // Counted as materialized when accepted; they are staged again instead.
        materialized_rows: s.materialized_rows - event.data.rows.length,
        reported_failures: [
          ...s.reported_failures,
          failureKey(event.data.source_seq, event.data.journal_epoch),
        ].slice(-64),
        staged_rows: s.staged_rows + event.data.rows.length,
        staged_bytes: s.staged_bytes + rowsBytes(event.data.rows),
      };
    case 'MaterializationReset':
      return { ...s, consecutive_failures: 0 };
    case 'ControlIssued':
      return {
        ...s,
        device_paused:
          event.data.control_kind === 'pause_lineage'
            ? true
            : event.data.control_kind === 'resume_lineage'
              ? false
              : s.device_paused,
        controls: [
          ...s.controls.filter((c) => !c.acknowledged).slice(-31),
          {
            control_id: event.data.control_id,
            control_kind: event.data.control_kind,
            reason: event.data.reason,
            server_watermark: event.data.server_watermark,
            acknowledged: false,
            deliveries: 0,
          },
        ],
      };
    case 'ControlDelivered':
      return {
        ...s,
        controls: s.controls.map((c) =>
          c.control_id === event.data.control_id ? { ...c, deliveries: c.deliveries + 1 } : c,
        ),
      };
    case 'ControlAcknowledged':
      return {
        ...s,
        controls: s.controls.map((c) =>
          c.control_id === event.data.control_id ? { ...c, acknowledged: true } : c,
        ),
      };
    default:
      return assertNever(event, 'lineage event');
  }
}
