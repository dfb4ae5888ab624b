import type { ControlKind, RowChange, WireValue } from '../protocol/contracts';
import type { SchemaColumns } from '../protocol/fingerprint';
import { canonicalJson } from '../shared/canonical';
import { assertNever } from '../shared/decider';
import type {
  Classification,
  ColumnBinding,
  DataPoint,
  LineageAuthority,
  LineageEvent,
  LineageKind,
  PauseReason,
  VerifyOutcome,
} from './events';

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
  /** Recent telemetry batch ids by batch_seq: a retried batch is a no-op, a reused seq is not. */
  recent_batches: readonly (readonly [number, string])[];
  /** The newest journal epoch and the highest commit_seq taken in from it (the watermark). */
  last_epoch: string | null;
  last_commit_seq: number;
  staged_rows: number;
  staged_bytes: number;
  /** Released for replay but not yet confirmed materialized: still pending for backpressure. */
  replaying_rows: number;
  replaying_bytes: number;
  materialized_rows: number;
  replay: Readonly<{ replay_id: string; done: boolean }> | null;
  consecutive_failures: number;
  /** Failure reports already taken, as `<source_seq>:<journal_epoch>` (the most recent few). */
  reported_failures: readonly string[];
  controls: readonly ControlState[];
  /** A pause_lineage control was issued and no resume_lineage after it: the device holds its rows. */
  device_paused: boolean;
  topic_slug: string | null;
  /** Hashes waiting for a registry decision (coalescing on), by registry entry id. */
  awaiting: Readonly<Record<string, string>>;
  /** The registry entry whose approval the lineage materializes under (a coalesced table), if any. */
  coalesced: Readonly<{ registry_id: string; scope: 'project' | 'fleet'; scope_id: string }> | null;
  fleet_id: string | null;
  /** Cloud write-back (docs/write-back.md); absent until the first authority change or write. */
  write_back?: WriteBackState;
  /** Uploads of the secondary flow, newest last (absent in states folded before uploads existed). */
  uploads?: readonly UploadState[];
  /**
   * The content digest of each of the last RECENT_BATCH_DIGESTS batch ids taken in, oldest first:
   * a batch that reuses one of these ids with another digest is refused (batch_id_conflict).
   */
  batch_digests?: readonly (readonly [string, string])[];
  /** Changes the device could not encode (op `refused`), in total and by refusal code. */
  refused_rows?: number;
  refused_by_code?: Readonly<Record<string, number>>;
  /** Columns taken on unbound by SchemaVersionAdopted: an approval binds them like new columns. */
  unbound_columns?: readonly string[];
  /** A re_enrolment resync asked the device for its schema and has not been answered with columns yet. */
  schema_resync?: string | null;
  /** The most recent resyncs, newest last. */
  resyncs?: readonly ResyncState[];
  /** The most recent verify runs, newest last (the last one is what the API and CLI show). */
  verifies?: readonly VerifyState[];
  /** The last schema the device announced on sync/schema/observe (advisory). */
  observed_schema?: ObservedSchema;
  /** Telemetry data points of this device table by name (docs/telemetry.md). */
  data_points?: Readonly<Record<string, DataPoint>>;
}>;

export type ObservedSchema = Readonly<{
  schema_hash: string;
  schema_columns: SchemaColumns | null;
  observed_at: string;
}>;

export type ResyncState = Readonly<{
  resync_id: string;
  control_id: string;
  buckets: readonly number[] | null;
  reason: 're_enrolment' | 'verify_repair' | 'operator';
}>;

export type VerifyState = Readonly<{
  verify_id: string;
  control_id: string;
  columns: readonly string[];
  trigger: 'operator' | 'schedule';
  status: 'requested' | 'reported' | 'completed';
  requested_at: string;
  reported_at: string | null;
  completed_at: string | null;
  /** The position the device digested at, once reported. */
  journal_epoch: string | null;
  through_commit_seq: number | null;
  outcome: VerifyOutcome | null;
  divergent_buckets: readonly number[];
  device_rows: number | null;
  mirror_rows: number | null;
  detail: string | null;
  resync_id: string | null;
}>;

/** How many batch ids a lineage remembers the digest of (about a day of batches at one a 20 s). */
export const RECENT_BATCH_DIGESTS = 4096;
const RECENT_VERIFIES = 16;
const RECENT_RESYNCS = 16;

export const lastVerify = (s: ActiveLineage): VerifyState | undefined => s.verifies?.at(-1);
export const findVerify = (s: ActiveLineage, verifyId: string): VerifyState | undefined =>
  (s.verifies ?? []).find((v) => v.verify_id === verifyId);

/** The digest a batch id was taken in with, if it is among the recent ones. */
export const batchDigestOf = (s: ActiveLineage, batchId: string): string | undefined =>
  (s.batch_digests ?? []).find(([id]) => id === batchId)?.[1];

function rememberBatch(s: ActiveLineage, batchId: string, digest: string | undefined): ActiveLineage {
  if (digest === undefined || batchDigestOf(s, batchId) !== undefined) return s;
  const list = s.batch_digests ?? [];
  const next = [...list, [batchId, digest] as const];
  return {
    ...s,
    batch_digests: next.length > RECENT_BATCH_DIGESTS ? next.slice(-RECENT_BATCH_DIGESTS) : next,
  };
}

function patchVerify(s: ActiveLineage, verifyId: string, patch: Partial<VerifyState>): ActiveLineage {
  if (!s.verifies) return s;
  return { ...s, verifies: s.verifies.map((v) => (v.verify_id === verifyId ? { ...v, ...patch } : v)) };
}

export type UploadState = Readonly<{
  upload_id: string;
  journal_epoch: string;
  schema_hash: string;
  schema_columns: SchemaColumns | null;
  first_commit_seq: number;
  last_commit_seq: number;
  row_count: number;
  control_id: string;
  expires_at: string;
  status: 'granted' | 'completed' | 'failed';
  /** Chunks appended so far: a resumed finalize skips these. */
  chunks: number;
  rows: number;
  duplicates: number;
}>;

/** The cloud's row of one key: every value written to it so far, and its current version. */
export type CloudRow = Readonly<{
  pk: Readonly<Record<string, WireValue>>;
  values: Readonly<Record<string, WireValue>>;
  cloud_version: number;
  /** The last state_write control that carried this key's current version. */
  control_id: string | null;
}>;

export type WriteBackState = Readonly<{
  authority: LineageAuthority;
  /** One version per write, increasing per lineage (so per key too); see decideWrite. */
  last_cloud_version: number;
  /** By cloudKey(pk). */
  rows: Readonly<Record<string, CloudRow>>;
}>;

/** How cloud rows are keyed: the canonical JSON of the wire pk, as the agent keys cloud_versions. */
export const cloudKey = (pk: Readonly<Record<string, WireValue>>): string => canonicalJson(pk);

export const authorityOf = (s: ActiveLineage): LineageAuthority =>
  s.write_back?.authority ?? 'device_authoritative';

const NO_WRITE_BACK: WriteBackState = {
  authority: 'device_authoritative',
  last_cloud_version: 0,
  rows: {},
};

export type ControlState = Readonly<{
  control_id: string;
  control_kind: ControlKind;
  reason: string;
  server_watermark: number;
  acknowledged: boolean;
  deliveries: number;
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

function withoutKey<T>(record: Readonly<Record<string, T>>, key: string): Record<string, T> {
  const out = { ...record };
  delete out[key];
  return out;
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
      recent_batches: [],
      last_epoch: null,
      last_commit_seq: 0,
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
  }
  if (state.status !== 'registered') return state;
  const s = state;
  switch (event.type) {
    case 'SchemaVersionObserved':
      return {
        ...s,
        schemas: { ...s.schemas, [event.data.schema_hash]: event.data.schema_columns },
        classifications: { ...s.classifications, [event.data.schema_hash]: event.data.classification },
        // Columns arrived: the device answered the re_enrolment resync (or never needed it).
        ...(event.data.schema_columns && s.schema_resync ? { schema_resync: null } : {}),
      };
    case 'SchemaObserved':
      return { ...s, observed_schema: event.data };
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
        awaiting: withoutKey(s.awaiting ?? {}, event.data.schema_hash),
        approved_hash: event.data.schema_hash,
        bindings: event.data.bindings,
        // A review of the lineage's own materializes device-scoped again.
        coalesced: null,
        unbound_columns: [],
      };
    case 'SchemaVersionAdopted':
      return {
        ...s,
        approved_hash: event.data.schema_hash,
        bindings: event.data.bindings,
        unbound_columns: [...new Set([...(s.unbound_columns ?? []), ...event.data.unbound_columns])],
      };
    case 'SchemaReviewRejected':
      return updateReview(s, event.data.review_id, {
        status: 'rejected',
        action_version: event.data.action_version,
      });
    case 'DataPointsCreated':
      return {
        ...s,
        data_points: {
          ...s.data_points,
          ...Object.fromEntries(event.data.data_points.map((p) => [p.name, p])),
        },
      };
    case 'LineagePaused':
      return s.pause_reasons.includes(event.data.reason)
        ? s
        : { ...s, pause_reasons: [...s.pause_reasons, event.data.reason] };
    case 'LineageResumed':
      return { ...s, pause_reasons: withoutReason(s.pause_reasons, event.data.reason) };
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
    case 'ControlIssued':
      return {
        ...s,
        device_paused:
          event.data.control_kind === 'pause_lineage'
            ? true
            : event.data.control_kind === 'resume_lineage'
              ? false
              : s.device_paused,
        ...(event.data.control_kind === 'state_write' && event.data.rows && s.write_back
          ? { write_back: carriedBy(s.write_back, event.data.control_id, event.data.rows) }
          : {}),
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
    case 'LineageDeleted':
      return { status: 'deleted', lineage_id: s.lineage_id };
    case 'RegistryReviewAwaited':
      return { ...s, awaiting: { ...s.awaiting, [event.data.schema_hash]: event.data.registry_id } };
    case 'SchemaApprovedByRegistry': {
      return {
        ...s,
        awaiting: withoutKey(s.awaiting ?? {}, event.data.schema_hash),
        approved_hash: event.data.schema_hash,
        bindings: event.data.bindings,
        coalesced: {
          registry_id: event.data.registry_id,
          scope: event.data.scope,
          scope_id: event.data.scope_id,
        },
      };
    }
    case 'LineageFleetAssigned':
      return { ...s, fleet_id: event.data.fleet_id };
    case 'LineageAuthoritySet':
      return { ...s, write_back: { ...(s.write_back ?? NO_WRITE_BACK), authority: event.data.authority } };
    case 'CloudRowsWritten': {
      const wb = s.write_back ?? NO_WRITE_BACK;
      const rows = { ...wb.rows };
      for (const r of event.data.rows) {
        const key = cloudKey(r.pk);
        const prev = Object.hasOwn(rows, key) ? rows[key] : undefined;
        rows[key] = {
          pk: r.pk,
          values: { ...prev?.values, ...r.values },
          cloud_version: r.cloud_version,
          control_id: prev?.control_id ?? null,
        };
      }
      return {
        ...s,
        write_back: {
          ...wb,
          last_cloud_version: Math.max(wb.last_cloud_version, event.data.cloud_version),
          rows,
        },
      };
    }
    case 'StateWriteConflictDetected':
      // Taken in like accepted rows (a retried batch is deduped), never materialized.
      return rememberBatch(
        takeIn(s, event.data.journal_epoch, event.data.conflicts),
        event.data.batch_id,
        event.data.payload_digest,
      );
    case 'UploadGranted': {
      const d = event.data;
      const prev = findUpload(s, d.upload_id);
      const next: UploadState = {
        upload_id: d.upload_id,
        journal_epoch: d.journal_epoch,
        schema_hash: d.schema_hash,
        schema_columns: d.schema_columns,
        first_commit_seq: d.first_commit_seq,
        last_commit_seq: d.last_commit_seq,
        row_count: d.row_count,
        control_id: d.control_id,
        expires_at: d.expires_at,
        status: 'granted',
        chunks: prev?.chunks ?? 0,
        rows: prev?.rows ?? 0,
        duplicates: prev?.duplicates ?? 0,
      };
      const others = (s.uploads ?? []).filter((u) => u.upload_id !== d.upload_id);
      // Finished uploads are only kept for a while (a late finalize of one is a no-op).
      return { ...s, uploads: [...others.slice(-(MAX_UPLOADS - 1)), next] };
    }
    case 'UploadChunkAppended':
      return patchUpload(s, event.data.upload_id, (u) => ({
        chunks: Math.max(u.chunks, event.data.chunk + 1),
        rows: u.rows + event.data.rows,
        duplicates: u.duplicates + event.data.duplicates_skipped,
      }));
    case 'UploadCompleted':
      return patchUpload(s, event.data.upload_id, () => ({ status: 'completed' }));
    case 'UploadFailed':
      return patchUpload(s, event.data.upload_id, () => ({ status: 'failed' }));
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
    case 'SchemaReviewReopened':
      return updateReview(s, event.data.review_id, {
        status: 'queued',
        action_version: event.data.action_version,
      });
    case 'VerifyRequested': {
      const d = event.data;
      const next: VerifyState = {
        verify_id: d.verify_id,
        control_id: d.control_id,
        columns: d.columns,
        trigger: d.trigger,
        status: 'requested',
        requested_at: d.requested_at,
        reported_at: null,
        completed_at: null,
        journal_epoch: null,
        through_commit_seq: null,
        outcome: null,
        divergent_buckets: [],
        device_rows: null,
        mirror_rows: null,
        detail: null,
        resync_id: null,
      };
      return { ...s, verifies: [...(s.verifies ?? []).slice(-(RECENT_VERIFIES - 1)), next] };
    }
    case 'VerifyReported':
      return patchVerify(s, event.data.verify_id, {
        status: 'reported',
        reported_at: event.data.reported_at ?? null,
        journal_epoch: event.data.journal_epoch,
        through_commit_seq: event.data.through_commit_seq,
        device_rows: event.data.digests.reduce((n, d) => n + d.rows, 0),
      });
    case 'VerifyCompleted':
      return patchVerify(s, event.data.verify_id, {
        status: 'completed',
        completed_at: event.data.completed_at ?? null,
        outcome: event.data.outcome,
        divergent_buckets: event.data.divergent_buckets,
        device_rows: event.data.device_rows,
        mirror_rows: event.data.mirror_rows,
        detail: event.data.detail ?? null,
        resync_id: event.data.resync_id ?? null,
      });
    case 'ResyncRequested': {
      const d = event.data;
      return {
        ...s,
        resyncs: [
          ...(s.resyncs ?? []).slice(-(RECENT_RESYNCS - 1)),
          { resync_id: d.resync_id, control_id: d.control_id, buckets: d.buckets, reason: d.reason },
        ],
        ...(d.reason === 're_enrolment' ? { schema_resync: d.resync_id } : {}),
      };
    }
    default:
      return assertNever(event, 'lineage event');
  }
}

export const failureKey = (sourceSeq: number, epoch: string | null): string => `${sourceSeq}:${epoch ?? ''}`;

export const isPaused = (s: ActiveLineage): boolean => s.pause_reasons.length > 0;

/** Bytes a batch of rows stands for in backlog accounting: the size of their JSON. */
export function rowsBytes(rows: readonly unknown[]): number {
  let n = 0;
  for (const r of rows) n += JSON.stringify(r).length;
  return n;
}

function carriedBy(
  wb: WriteBackState,
  controlId: string,
  carried: readonly Readonly<{ pk: Readonly<Record<string, WireValue>> }>[],
): WriteBackState {
  const rows = { ...wb.rows };
  for (const r of carried) {
    const key = cloudKey(r.pk);
    const row = Object.hasOwn(rows, key) ? rows[key] : undefined;
    if (row) rows[key] = { ...row, control_id: controlId };
  }
  return { ...wb, rows };
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

const MAX_UPLOADS = 16;

export const findUpload = (s: ActiveLineage, uploadId: string): UploadState | undefined =>
  (s.uploads ?? []).find((u) => u.upload_id === uploadId);

function patchUpload(
  s: ActiveLineage,
  uploadId: string,
  patch: (u: UploadState) => Partial<UploadState>,
): ActiveLineage {
  if (!s.uploads) return s;
  return {
    ...s,
    uploads: s.uploads.map((u) => (u.upload_id === uploadId ? { ...u, ...patch(u) } : u)),
  };
}
