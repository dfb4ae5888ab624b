/**
 * What a lineage's state holds (the fold of its events, state.ts), and the queries rules and
 * read paths ask of it. Evolve, by concern: evolve-governance.ts, evolve-rows.ts, evolve-device.ts.
 */
import type { ControlKind, WireValue } from '../protocol/contracts';
import type { SchemaColumns } from '../protocol/fingerprint';
import { canonicalJson } from '../shared/canonical';
import { assertNever } from '../shared/decider';
import type {
  Classification,
  ColumnBinding,
  DataPoint,
  LineageAuthority,
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

/** What every registered lineage holds, whatever it captures. */
export type LineageBase = Readonly<{
  status: 'registered';
  lineage_id: string;
  project_id: string;
  device_id: string;
  device_name: string;
  source_table: string;
  pause_reasons: readonly PauseReason[];
  /** Schema of every hash this lineage has seen, when the device sent it. */
  schemas: Readonly<Record<string, SchemaColumns | null>>;
  classifications: Readonly<Record<string, Classification>>;
  approved_hash: string | null;
  bindings: readonly ColumnBinding[];
  reviews: readonly ReviewState[];
  /** Columns taken on unbound by SchemaVersionAdopted: an approval binds them like new columns. */
  unbound_columns: readonly string[];
  /** The last schema the device announced on sync/schema/observe (advisory). */
  observed_schema: ObservedSchema | null;
  /**
   * The content digest of each of the last RECENT_BATCH_DIGESTS batch ids taken in, oldest first:
   * a batch that reuses one of these ids with another digest is refused (batch_id_conflict).
   */
  batch_digests: readonly (readonly [string, string])[];
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
}>;

/** A lineage of row changes from a journaled table (SPEC §3). */
export type RowsLineage = LineageBase &
  Readonly<{
    kind: 'rows';
    /** Per journal epoch, the commit_seqs already taken in (row dedupe). */
    accepted: Readonly<Record<string, SeqRanges>>;
    /** The newest journal epoch and the highest commit_seq taken in from it (the watermark). */
    last_epoch: string | null;
    last_commit_seq: number;
    /** Changes the device could not encode (op `refused`), in total and by refusal code. */
    refused_rows: number;
    refused_by_code: Readonly<Record<string, number>>;
    /** Cloud write-back (docs/write-back.md); device_authoritative with no rows until set. */
    write_back: WriteBackState;
    /** Uploads of the secondary flow, newest last. */
    uploads: readonly UploadState[];
    /** A re_enrolment resync asked the device for its schema and has not been answered with columns yet. */
    schema_resync: string | null;
    /** The most recent resyncs, newest last. */
    resyncs: readonly ResyncState[];
    /** The most recent verify runs, newest last (the last one is what the API and CLI show). */
    verifies: readonly VerifyState[];
  }>;

/** A lineage of telemetry batches, ordered by batch_seq (docs/telemetry.md). */
export type TelemetryLineage = LineageBase &
  Readonly<{
    kind: 'telemetry';
    last_batch_seq: number;
    /** Recent telemetry batch ids by batch_seq: a retried batch is a no-op, a reused seq is not. */
    recent_batches: readonly (readonly [number, string])[];
    /** Telemetry data points of this device table by name. */
    data_points: Readonly<Record<string, DataPoint>>;
  }>;

export type ActiveLineage = RowsLineage | TelemetryLineage;

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

export const lastVerify = (s: RowsLineage): VerifyState | undefined => s.verifies.at(-1);
export const findVerify = (s: RowsLineage, verifyId: string): VerifyState | undefined =>
  s.verifies.find((v) => v.verify_id === verifyId);

/** The digest a batch id was taken in with, if it is among the recent ones. */
export const batchDigestOf = (s: ActiveLineage, batchId: string): string | undefined =>
  s.batch_digests.find(([id]) => id === batchId)?.[1];

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
  s.kind === 'rows' ? s.write_back.authority : 'device_authoritative';

export const NO_WRITE_BACK: WriteBackState = {
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

export const failureKey = (sourceSeq: number, epoch: string | null): string => `${sourceSeq}:${epoch ?? ''}`;

export const isPaused = (s: ActiveLineage): boolean => s.pause_reasons.length > 0;

/** Bytes a batch of rows stands for in backlog accounting: the size of their JSON. */
export function rowsBytes(rows: readonly unknown[]): number {
  let n = 0;
  for (const r of rows) n += JSON.stringify(r).length;
  return n;
}

export const findUpload = (s: RowsLineage, uploadId: string): UploadState | undefined =>
  s.uploads.find((u) => u.upload_id === uploadId);

/** The position a control reports as `server_watermark`: commit_seq for rows, batch_seq for telemetry. */
export function watermarkOf(s: ActiveLineage): number {
  switch (s.kind) {
    case 'rows':
      return s.last_commit_seq;
    case 'telemetry':
      return s.last_batch_seq;
    default:
      return assertNever(s, 'lineage kind');
  }
}
