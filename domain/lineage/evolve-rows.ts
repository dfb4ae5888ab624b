/** How the rows of a lineage fold: taken in (dedupe, watermark, batch digests), staged, released, failed. */
import type { RowChange } from '../protocol/contracts';
import { assertNever } from '../shared/decider';
import type { LineageEvent } from './events';
import {
  type ActiveLineage,
  type LineageState,
  RECENT_BATCH_DIGESTS,
  addRange,
  batchDigestOf,
  failureKey,
  rowsBytes,
} from './state-types';

export type RowsEvent = Extract<
  LineageEvent,
  {
    type:
      | 'RowsStaged'
      | 'RowsAccepted'
      | 'TelemetryStaged'
      | 'TelemetryAccepted'
      | 'RowsRefused'
      | 'StateWriteConflictDetected'
      | 'StagedRowsReleased'
      | 'ReplayCompleted'
      | 'MaterializationFailed'
      | 'MaterializationReset';
  }
>;

function rememberBatch(s: ActiveLineage, batchId: string, digest: string | undefined): ActiveLineage {
  if (digest === undefined || batchDigestOf(s, batchId) !== undefined) return s;
  const list = s.batch_digests ?? [];
  const next = [...list, [batchId, digest] as const];
  return {
    ...s,
    batch_digests: next.length > RECENT_BATCH_DIGESTS ? next.slice(-RECENT_BATCH_DIGESTS) : next,
  };
}

function takeIn(
  s: ActiveLineage,
  epoch: string,
  rows: readonly Pick<RowChange, 'commit_seq'>[],
): ActiveLineage {
  const seqs = rows.map((r) => r.commit_seq);
  const max = Math.max(0, ...seqs);
  const newEpoch = s.last_epoch !== epoch && !Object.hasOwn(s.accepted, epoch);
  return {
    ...s,
    accepted: { ...s.accepted, [epoch]: addRange(s.accepted[epoch] ?? [], seqs) },
    last_epoch: newEpoch || s.last_epoch === null ? epoch : s.last_epoch,
    last_commit_seq: newEpoch
      ? max
      : s.last_epoch === epoch || s.last_epoch === null
        ? Math.max(s.last_commit_seq, max)
        : s.last_commit_seq,
  };
}

const RECENT_BATCHES = 64;

function takeInBatch(s: ActiveLineage, seq: number, batchId: string): ActiveLineage {
  return {
    ...s,
    last_batch_seq: Math.max(s.last_batch_seq, seq),
    recent_batches: [...s.recent_batches, [seq, batchId] as const].slice(-RECENT_BATCHES),
  };
}

export function evolveRows(s: ActiveLineage, event: RowsEvent): LineageState {
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
    case 'RowsRefused': {
      // Taken in like rows (a retried batch is deduped), counted, never materialized.
      const byCode = { ...s.refused_by_code };
      for (const r of event.data.rows) {
        const code = r.refusal?.code ?? 'unknown';
        byCode[code] = (byCode[code] ?? 0) + 1;
      }
      return {
        ...rememberBatch(
          takeIn(s, event.data.journal_epoch, event.data.rows),
          event.data.batch_id,
          event.data.payload_digest,
        ),
        refused_rows: (s.refused_rows ?? 0) + event.data.rows.length,
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
    default:
      return assertNever(event, 'lineage event');
  }
}
