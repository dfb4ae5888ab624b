/**
 * How a rows lineage folds: changes taken in (dedupe, watermark, batch digests), refused or
 * conflicting; the device exchanges only rows lineages have (evolve-device.ts); and what every
 * lineage folds (evolve-shared.ts).
 */
import type { RowChange } from '../protocol/contracts';
import { assertNever } from '../shared/decider';
import type { LineageEvent } from './events';
import { carriedBy, evolveDevice } from './evolve-device';
import { type LiveEvent, evolveShared, rememberBatch } from './evolve-shared';
import { type RowsLineage, addRange, rowsBytes } from './state-types';

export type RowsEvent = Extract<
  LineageEvent,
  { type: 'RowsStaged' | 'RowsAccepted' | 'RowsRefused' | 'StateWriteConflictDetected' }
>;

export type Watermark = Readonly<{ last_epoch: string | null; last_commit_seq: number }>;

/**
 * The watermark after changes of `epoch` are taken in: an epoch never taken in before becomes the
 * newest (first-appearance order, not UUID order), and its highest commit_seq is the watermark;
 * within the newest epoch the highest commit_seq counts; an older epoch leaves it alone. The
 * lineages projection keeps the same watermark with this function.
 */
export function advanceWatermark(
  w: Watermark,
  epoch: string,
  epochSeen: boolean,
  seqs: readonly number[],
): Watermark {
  const max = Math.max(0, ...seqs);
  const newEpoch = w.last_epoch !== epoch && !epochSeen;
  return {
    last_epoch: newEpoch || w.last_epoch === null ? epoch : w.last_epoch,
    last_commit_seq: newEpoch
      ? max
      : w.last_epoch === epoch || w.last_epoch === null
        ? Math.max(w.last_commit_seq, max)
        : w.last_commit_seq,
  };
}

function takeIn(s: RowsLineage, epoch: string, rows: readonly Pick<RowChange, 'commit_seq'>[]): RowsLineage {
  const seqs = rows.map((r) => r.commit_seq);
  return {
    ...s,
    accepted: { ...s.accepted, [epoch]: addRange(s.accepted[epoch] ?? [], seqs) },
    ...advanceWatermark(s, epoch, Object.hasOwn(s.accepted, epoch), seqs),
  };
}

/** The code a refused change is counted under. */
export const refusalCode = (r: Pick<RowChange, 'refusal'>): string => r.refusal?.code ?? 'unknown';

export function evolveRows(s: RowsLineage, event: LiveEvent): RowsLineage {
  switch (event.type) {
    case 'RowsStaged':
      return {
        ...rememberBatch(
          takeIn(s, event.data.journal_epoch, event.data.rows),
          event.data.batch_id,
          event.data.payload_digest,
        ),
        staged_rows: s.staged_rows + event.data.rows.length,
        staged_bytes: s.staged_bytes + rowsBytes(event.data.rows),
      };
    case 'RowsAccepted':
      return {
        ...rememberBatch(
          takeIn(s, event.data.journal_epoch, event.data.rows),
          event.data.batch_id,
          event.data.payload_digest,
        ),
        // Accepting rows is not writing them: only a reset ends a run of failures (the mirror
        // reports each failing write; an accepted batch says nothing about the next write).
        materialized_rows: s.materialized_rows + event.data.rows.length,
      };
    case 'RowsRefused': {
      // Taken in like rows (a retried batch is deduped), counted, never materialized.
      const byCode = { ...s.refused_by_code };
      for (const r of event.data.rows) {
        const code = refusalCode(r);
        byCode[code] = (byCode[code] ?? 0) + 1;
      }
      return {
        ...rememberBatch(
          takeIn(s, event.data.journal_epoch, event.data.rows),
          event.data.batch_id,
          event.data.payload_digest,
        ),
        refused_rows: s.refused_rows + event.data.rows.length,
        refused_by_code: byCode,
      };
    }
    case 'StateWriteConflictDetected':
      // Taken in like accepted rows (a retried batch is deduped), never materialized.
      return rememberBatch(
        takeIn(s, event.data.journal_epoch, event.data.conflicts),
        event.data.batch_id,
        event.data.payload_digest,
      );
    case 'SchemaVersionObserved': {
      const next = evolveShared(s, event);
      // Columns arrived: the device answered the re_enrolment resync (or never needed it).
      return event.data.schema_columns && next.schema_resync ? { ...next, schema_resync: null } : next;
    }
    case 'ControlIssued': {
      const next = evolveShared(s, event);
      return event.data.control_kind === 'state_write' && event.data.rows
        ? { ...next, write_back: carriedBy(next.write_back, event.data.control_id, event.data.rows) }
        : next;
    }
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
      return evolveDevice(s, event);
    case 'TelemetryStaged':
    case 'TelemetryAccepted':
    case 'DataPointsCreated':
      // A telemetry lineage's events: a batch of the other kind is refused, so none is appended here.
      return s;
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
    case 'ControlDelivered':
    case 'ControlAcknowledged':
      return evolveShared(s, event);
    default:
      return assertNever(event, 'lineage event');
  }
}
