import type { SchemaColumns } from '../protocol/fingerprint';
import { assertNever } from '../shared/decider';
import type { Classification, ColumnBinding, LineageEvent, LineageKind, PauseReason } from './events';

/** Closed ranges [from, to] of commit_seqs already accepted, sorted and merged. */
export type SeqRanges = readonly (readonly [number, number])[];

export type ReviewStatus = 'queued' | 'in_review' | 'approved' | 'rejected';

export type ReviewState = Readonly<{
  review_id: string;
  schema_hash: string;
  classification: Classification;
  status: ReviewStatus;
  action_version: number;
}>;

export type ActiveLineage = Readonly<{
  status: 'registered';
  lineage_id: string;
  project_id: string;
  device_id: string;
  device_name: string;
  source_table: string;
  kind: LineageKind;
  pause_reasons: readonly PauseReason[];
  /** Schema of every hash this lineage has seen, when the device sent it. */
  schemas: Readonly<Record<string, SchemaColumns | null>>;
  classifications: Readonly<Record<string, Classification>>;
  approved_hash: string | null;
  bindings: readonly ColumnBinding[];
  reviews: readonly ReviewState[];
  /** Per journal epoch, the commit_seqs already taken in (row dedupe). */
  accepted: Readonly<Record<string, SeqRanges>>;
  last_batch_seq: number;
  staged_rows: number;
  materialized_rows: number;
  replay: Readonly<{ replay_id: string; done: boolean }> | null;
}>;

export type LineageState =
  Readonly<{ status: 'unregistered' }> | ActiveLineage | Readonly<{ status: 'deleted'; lineage_id: string }>;

export const initialState = (): LineageState => ({ status: 'unregistered' });

export function addRange(ranges: SeqRanges, seqs: readonly number[]): SeqRanges {
  if (seqs.length === 0) return ranges;
  const all = [
    ...ranges.map((r) => [r[0], r[1]] as [number, number]),
    ...seqs.map((s) => [s, s] as [number, number]),
  ];
  all.sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  for (const r of all) {
    const last = out[out.length - 1];
    if (last && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
    else out.push([r[0], r[1]]);
  }
  return out;
}

export function inRanges(ranges: SeqRanges, seq: number): boolean {
  let lo = 0;
  let hi = ranges.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = ranges[mid]!;
    if (seq < r[0]) hi = mid - 1;
    else if (seq > r[1]) lo = mid + 1;
    else return true;
  }
  return false;
}

const withoutReason = (reasons: readonly PauseReason[], r: PauseReason) => reasons.filter((x) => x !== r);

function updateReview(s: ActiveLineage, id: string, patch: Partial<ReviewState>): ActiveLineage {
  return { ...s, reviews: s.reviews.map((r) => (r.review_id === id ? { ...r, ...patch } : r)) };
}

export function evolve(state: LineageState, event: LineageEvent): LineageState {
  if (event.type === 'LineageRegistered') {
    const d = event.data;
    return {
      status: 'registered',
      lineage_id: d.lineage_id,
      project_id: d.project_id,
      device_id: d.device_id,
      device_name: d.device_name,
      source_table: d.source_table,
      kind: d.kind,
      pause_reasons: [],
      schemas: {},
      classifications: {},
      approved_hash: null,
      bindings: [],
      reviews: [],
      accepted: {},
      last_batch_seq: 0,
      staged_rows: 0,
      materialized_rows: 0,
      replay: null,
    };
  }
  if (state.status !== 'registered') return state;
  const s = state;
  switch (event.type) {
    case 'SchemaVersionObserved':
      return {
        ...s,
        schemas: { ...s.schemas, [event.data.schema_hash]: event.data.schema_columns },
        classifications: { ...s.classifications, [event.data.schema_hash]: event.data.classification },
      };
    case 'SchemaReviewQueued':
      return {
        ...s,
        reviews: [
          ...s.reviews,
          {
            review_id: event.data.review_id,
            schema_hash: event.data.schema_hash,
            classification: event.data.classification,
            status: 'queued',
            action_version: event.data.action_version,
          },
        ],
      };
    case 'SchemaReviewClaimed':
      return updateReview(s, event.data.review_id, {
        status: 'in_review',
        action_version: event.data.action_version,
      });
    case 'SchemaReviewApproved':
      return {
        ...updateReview(s, event.data.review_id, {
          status: 'approved',
          action_version: event.data.action_version,
        }),
        approved_hash: event.data.schema_hash,
        bindings: event.data.bindings,
      };
    case 'SchemaReviewRejected':
      return updateReview(s, event.data.review_id, {
        status: 'rejected',
        action_version: event.data.action_version,
      });
    case 'LineagePaused':
      return s.pause_reasons.includes(event.data.reason)
        ? s
        : { ...s, pause_reasons: [...s.pause_reasons, event.data.reason] };
    case 'LineageResumed':
      return { ...s, pause_reasons: withoutReason(s.pause_reasons, event.data.reason) };
    case 'RowsStaged':
      return {
        ...s,
        accepted: {
          ...s.accepted,
          [event.data.journal_epoch]: addRange(
            s.accepted[event.data.journal_epoch] ?? [],
            event.data.rows.map((r) => r.commit_seq),
          ),
        },
        staged_rows: s.staged_rows + event.data.rows.length,
      };
    case 'RowsAccepted':
      return {
        ...s,
        accepted: {
          ...s.accepted,
          [event.data.journal_epoch]: addRange(
            s.accepted[event.data.journal_epoch] ?? [],
            event.data.rows.map((r) => r.commit_seq),
          ),
        },
        materialized_rows: s.materialized_rows + event.data.rows.length,
      };
    case 'TelemetryStaged':
      return {
        ...s,
        last_batch_seq: event.data.batch_seq,
        staged_rows: s.staged_rows + event.data.rows.length,
      };
    case 'TelemetryAccepted':
      return {
        ...s,
        last_batch_seq: event.data.batch_seq,
        materialized_rows: s.materialized_rows + event.data.rows.length,
      };
    case 'StagedRowsReleased':
      return {
        ...s,
        replay: { replay_id: event.data.replay_id, done: false },
        materialized_rows: s.materialized_rows + s.staged_rows,
        staged_rows: 0,
      };
    case 'ReplayCompleted':
      return s.replay?.replay_id === event.data.replay_id ? { ...s, replay: { ...s.replay, done: true } } : s;
    case 'LineageDeleted':
      return { status: 'deleted', lineage_id: s.lineage_id };
    default:
      return assertNever(event, 'lineage event');
  }
}

export const isPaused = (s: ActiveLineage): boolean => s.pause_reasons.length > 0;

export function openReview(s: ActiveLineage): ReviewState | undefined {
  return s.reviews.find((r) => r.status === 'queued' || r.status === 'in_review');
}
