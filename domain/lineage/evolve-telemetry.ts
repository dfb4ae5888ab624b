/**
 * How a telemetry lineage folds: batches taken in by batch_seq (with their batch digests), the data
 * points its approvals create, and what every lineage folds (evolve-shared.ts).
 */
import { assertNever } from '../shared/decider';
import { type LiveEvent, evolveShared, rememberBatch } from './evolve-shared';
import { type TelemetryLineage, rowsBytes } from './state-types';

const RECENT_BATCHES = 64;

function takeInBatch(s: TelemetryLineage, seq: number, batchId: string): TelemetryLineage {
  return {
    ...s,
    last_batch_seq: Math.max(s.last_batch_seq, seq),
    recent_batches: [...s.recent_batches, [seq, batchId] as const].slice(-RECENT_BATCHES),
  };
}

export function evolveTelemetry(s: TelemetryLineage, event: LiveEvent): TelemetryLineage {
  switch (event.type) {
    case 'TelemetryStaged':
      return {
        ...rememberBatch(
          takeInBatch(s, event.data.batch_seq, event.data.batch_id),
          event.data.batch_id,
          event.data.payload_digest,
        ),
        staged_rows: s.staged_rows + event.data.rows.length,
        staged_bytes: s.staged_bytes + rowsBytes(event.data.rows),
      };
    case 'TelemetryAccepted':
      return {
        ...rememberBatch(
          takeInBatch(s, event.data.batch_seq, event.data.batch_id),
          event.data.batch_id,
          event.data.payload_digest,
        ),
        materialized_rows: s.materialized_rows + event.data.rows.length,
      };
    case 'DataPointsCreated':
      return {
        ...s,
        data_points: {
          ...s.data_points,
          ...Object.fromEntries(event.data.data_points.map((p) => [p.name, p])),
        },
      };
    case 'RowsStaged':
    case 'RowsAccepted':
    case 'RowsRefused':
    case 'StateWriteConflictDetected':
    case 'LineageAuthoritySet':
    case 'CloudRowsWritten':
    case 'UploadGranted':
    case 'UploadChunkAppended':
    case 'UploadCompleted':
    case 'UploadFailed':
    case 'VerifyRequested':
    case 'VerifyReported':
    case 'VerifyCompleted':
    case 'ResyncRequested':
      // A rows lineage's events: the deciders refuse them for a telemetry lineage, so none is appended here.
      return s;
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
    case 'StagedRowsReleased':
    case 'ReplayCompleted':
    case 'MaterializationFailed':
    case 'MaterializationReset':
    case 'ControlIssued':
    case 'ControlDelivered':
    case 'ControlAcknowledged':
      return evolveShared(s, event);
    default:
      return assertNever(event, 'lineage event');
  }
}
