import type { RowBatch, RowChange, TelemetryBatch, UrlRequest, VerifyReport } from '../protocol/contracts';
import type { SchemaColumns } from '../protocol/fingerprint';
import type { Policy } from '../policy/policy';
import type { RegistryView } from '../registry/decide';
import { assertNever } from '../shared/decider';
import { DomainError } from '../shared/errors';
import { classifySchema } from './classify';
import { decideObserveSchema, type ObserveSchemaData } from './observe';
import { decideTelemetryBatch, withDataPoints } from './telemetry';
import type {
  ColumnAction,
  ColumnBinding,
  LineageAuthority,
  LineageEvent,
  PauseReason,
  StagingReason,
  VerifyOutcome,
} from './events';
import {
  type ActiveLineage,
  type LineageState,
  batchDigestOf,
  evolve,
  failureKey,
  findUpload,
  findVerify,
  inRanges,
  lastVerify,
} from './state';
import { type WriteCloudRowsData, cloudWins, decideAuthority, decideWrite } from './write-back';

type Identity = Readonly<{ project_id: string; device_id: string; device_name: string; topic_slug?: string }>;

/** Ids and time a decision may need; the caller mints them, so the decider stays pure. */
type Minted = Readonly<{ new_control_id: string; new_replay_id: string; now: string }>;

/** Commands carry every id, time and policy the decision needs: the decider itself is pure. */
export type LineageCommand =
  | Readonly<{
      type: 'IngestRowBatch';
      data: Identity &
        Minted & {
          batch: RowBatch;
          new_lineage_id: string;
          new_review_id: string;
          policy: Policy;
          /** Coalescing on: the registry entry of (scope, table, hash); its decision replaces a review. */
          registry?: RegistryView;
          /** The device's fleet as the device registry has it now (undefined: not known). */
          fleet_id?: string | null;
          /** Id of the state_write that re-sends cloud rows after a conflict (without it none is sent). */
          new_write_control_id?: string;
          /** The batch's content digest (BatchDigest); absent: the batch id is not checked for reuse. */
          payload_digest?: string;
          /** Ids of the re_enrolment resync the batch may need (without them none is requested). */
          new_resync_id?: string;
          new_resync_control_id?: string;
        };
    }>
  | Readonly<{
      type: 'IngestTelemetryBatch';
      data: Identity &
        Minted & {
          batch: TelemetryBatch;
          new_lineage_id: string;
          new_review_id: string;
          policy: Policy;
          fleet_id?: string | null;
          payload_digest?: string;
          registry?: RegistryView;
        };
    }>
  | Readonly<{ type: 'ClaimReview'; data: { review_id: string; action_version: number } }>
  | Readonly<{
      type: 'ApproveReview';
      data: {
        review_id: string;
        action_version: number;
        column_actions?: readonly ColumnAction[];
        replay_id: string;
        policy?: Policy;
      };
    }>
  | Readonly<{ type: 'RejectReview'; data: { review_id: string; action_version: number; reason: string } }>
  | Readonly<{ type: 'ReopenReview'; data: { review_id: string; action_version: number } }>
  | Readonly<{
      /** Ask the device for digests of its table (docs/verify.md). */
      type: 'RequestVerify';
      data: {
        verify_id: string;
        control_id: string;
        now: string;
        trigger: 'operator' | 'schedule';
        /** schedule only: no new run while the last one was requested less than this long ago. */
        interval_minutes?: number;
      };
    }>
  | Readonly<{ type: 'ReportVerify'; data: { report: VerifyReport; now: string } }>
  | Readonly<{
      /** The mirror's comparison of a VerifyReported at the same position (sent by the projector). */
      type: 'CompleteVerify';
      data: {
        verify_id: string;
        outcome: VerifyOutcome;
        divergent_buckets: readonly number[];
        device_rows: number;
        mirror_rows: number;
        detail?: string;
        new_resync_id: string;
        new_control_id: string;
        now: string;
      };
    }>
  | Readonly<{
      /** An operator asks the device to send the table (or some key buckets) again. */
      type: 'RequestResync';
      data: { resync_id: string; control_id: string; now: string; buckets: readonly number[] | null };
    }>
  | Readonly<{
      type: 'CompleteReplay';
      data: { replay_id: string; rows: number; policy?: Policy } & Partial<Minted>;
    }>
  | Readonly<{
      type: 'ReportMaterializationFailure';
      data: Minted & {
        /** Stream sequence of the event that failed: a report is taken once. */
        source_seq: number;
        code: string;
        message: string;
        permanent: boolean;
        rows: readonly RowChange[];
        journal_epoch: string | null;
        policy: Policy;
      };
    }>
  | Readonly<{ type: 'ResetMaterialization'; data: Minted & { policy: Policy } }>
  | Readonly<{ type: 'RecordControlDelivery'; data: { control_id: string; delivered_at: string } }>
  | Readonly<{ type: 'AcknowledgeControl'; data: { control_id: string; acknowledged_at: string } }>
  | Readonly<{ type: 'DeleteLineage'; data: { reason: string } }>
  | Readonly<{
      type: 'ApplyRegistryApproval';
      data: RegistryApproval & { replay_id: string; policy?: Policy };
    }>
  | Readonly<{ type: 'AssignFleet'; data: { fleet_id: string | null } }>
  | Readonly<{ type: 'SetLineageAuthority'; data: { authority: LineageAuthority } }>
  | Readonly<{ type: 'WriteCloudRows'; data: WriteCloudRowsData }>
  | Readonly<{
      /** A device's url_request; `expires_at` is when the grant's URL stops working. */
      type: 'RequestUpload';
      data: Identity & Minted & { request: UrlRequest; new_lineage_id: string; expires_at: string };
    }>
  | Readonly<{
      /** The next chunk (numbered from 0) of an uploaded object, in the object's order. */
      type: 'IngestUploadChunk';
      data: Minted & {
        upload_id: string;
        chunk: number;
        rows: readonly RowChange[];
        new_review_id: string;
        policy: Policy;
        /** Coalescing on: the registry entry of (scope, table, hash), as for a row batch. */
        registry?: RegistryView;
      };
    }>
  | Readonly<{ type: 'CompleteUpload'; data: { upload_id: string; chunks: number; rows_read: number } }>
  | Readonly<{ type: 'FailUpload'; data: { upload_id: string; code: string; message: string } }>
  | Readonly<{ type: 'ObserveSchema'; data: ObserveSchemaData }>;

/** An approved registry entry, as a lineage takes it. */
export type RegistryApproval = Readonly<{
  registry_id: string;
  review_id: string | null;
  schema_hash: string;
  scope: 'project' | 'fleet';
  scope_id: string;
  bindings: readonly ColumnBinding[];
}>;

export type LineageCommandType = LineageCommand['type'];
export { MAX_PENDING_STATE_WRITES, MAX_WRITE_ROWS } from './write-back';

/** Gate reasons that hold rows in staging; volume backpressure alone drains staging instead. */
export const GATING: readonly PauseReason[] = [
  'schema_review',
  'deferred_columns',
  'circuit_breaker',
  'data_points',
];

export function requireLineage(state: LineageState): ActiveLineage {
  if (state.status === 'registered') return state;
  if (state.status === 'deleted')
    throw new DomainError('lineage_deleted', `lineage ${state.lineage_id} was deleted`);
  throw new DomainError('not_found', 'lineage not found');
}

export function apply(state: LineageState, events: readonly LineageEvent[]): LineageState {
  return events.reduce(evolve, state);
}

export function register(
  state: LineageState,
  d: Identity & { new_lineage_id: string },
  source_table: string,
  kind: 'rows' | 'telemetry',
): LineageEvent[] {
  if (state.status === 'registered') return [];
  if (state.status === 'deleted')
    throw new DomainError('lineage_deleted', `lineage ${state.lineage_id} was deleted`);
  return [
    {
      type: 'LineageRegistered',
      data: {
        lineage_id: d.new_lineage_id,
        project_id: d.project_id,
        device_id: d.device_id,
        device_name: d.device_name,
        source_table,
        kind,
        ...(d.topic_slug !== undefined ? { topic_slug: d.topic_slug } : {}),
      },
    },
  ];
}

/** Decide what a batch's schema hash means for the lineage: observe, classify, maybe review and pause. */
export function governSchema(
  s: ActiveLineage,
  hash: string,
  columns: RowBatch['schema_columns'],
  reviewId: string,
  policy: Policy,
  registry?: RegistryView,
): LineageEvent[] {
  const events: LineageEvent[] = [];
  const known = Object.hasOwn(s.classifications, hash);
  const fromRegistry = registry && s.approved_hash !== hash ? registry : undefined;
  if (known && fromRegistry?.status === 'approved' && (s.awaiting ?? {})[hash] === fromRegistry.registry_id) {
    // Waiting for this entry, and it was approved since: take it now, ahead of the fan-out.
    registryApproval(s, events, approvalOf(fromRegistry, hash), null);
    return events;
  }
  if (
    known &&
    !registry &&
    (s.awaiting ?? {})[hash] !== undefined &&
    !s.reviews.some((r) => r.schema_hash === hash && (r.status === 'queued' || r.status === 'in_review'))
  ) {
    // It waited for a registry entry, and the project stopped coalescing: a review of its own now.
    events.push({
      type: 'SchemaReviewQueued',
      data: {
        review_id: reviewId,
        schema_hash: hash,
        classification: s.classifications[hash] ?? 'ambiguous',
        action_version: 1,
      },
    });
    return events;
  }
  if (!known || (columns && !s.schemas[hash])) {
    const incoming = columns ?? s.schemas[hash] ?? null;
    const classification =
      !known && fromRegistry?.status === 'approved' ? 'compatible_mapped' : classifySchema(s, hash, incoming);
    events.push({
      type: 'SchemaVersionObserved',
      data: { schema_hash: hash, schema_columns: incoming, classification },
    });
    if (known) return events;
    if (classification === 'compatible_additive' && policy.allow_additive_continue && incoming && !gated(s)) {
      // Keep materializing the bound columns; the new ones stay unbound until a review binds them.
      const bound = new Set(s.bindings.map((b) => b.column));
      const added = incoming.columns.filter((c) => !bound.has(c.name));
      const bindings = [
        ...s.bindings,
        ...added.map((c) => ({
          column: c.name,
          action: 'ignore' as const,
          target: null,
          affinity: c.decl_type_affinity,
          pk_ordinal: c.pk_ordinal,
          not_null: c.not_null,
        })),
      ];
      events.push({
        type: 'SchemaVersionAdopted',
        data: { schema_hash: hash, bindings, unbound_columns: added.map((c) => c.name) },
      });
      return events;
    }
    if (fromRegistry?.status === 'approved') {
      registryApproval(requireLineage(apply(s, events)), events, approvalOf(fromRegistry, hash), null);
      return events;
    }
    if (fromRegistry) {
      // The registry entry decides for every lineage in scope: no review of the lineage's own.
      if ((s.awaiting ?? {})[hash] !== fromRegistry.registry_id) {
        events.push({
          type: 'RegistryReviewAwaited',
          data: {
            registry_id: fromRegistry.registry_id,
            schema_hash: hash,
            scope: fromRegistry.scope,
            scope_id: fromRegistry.scope_id,
          },
        });
      }
      if (!s.pause_reasons.includes('schema_review')) {
        events.push({ type: 'LineagePaused', data: { reason: 'schema_review' } });
      }
      return events;
    }
    if (classification !== 'compatible_mapped') {
      if (
        !s.reviews.some((r) => r.schema_hash === hash && (r.status === 'queued' || r.status === 'in_review'))
      ) {
        events.push({
          type: 'SchemaReviewQueued',
          data: { review_id: reviewId, schema_hash: hash, classification, action_version: 1 },
        });
      }
      if (!s.pause_reasons.includes('schema_review')) {
        events.push({ type: 'LineagePaused', data: { reason: 'schema_review' } });
      }
    }
  }
  return events;
}

const approvalOf = (v: RegistryView, hash: string): RegistryApproval => ({
  registry_id: v.registry_id,
  review_id: v.review_id,
  schema_hash: hash,
  scope: v.scope,
  scope_id: v.scope_id,
  bindings: v.bindings ?? [],
});

/** Reviews of the lineage's own still open, and registry entries it still waits for. */
function openGates(s: ActiveLineage, exceptReview: string | null, exceptHash: string | null): boolean {
  return (
    s.reviews.some(
      (r) => r.review_id !== exceptReview && (r.status === 'queued' || r.status === 'in_review'),
    ) || Object.keys(s.awaiting ?? {}).some((h) => h !== exceptHash)
  );
}

/**
 * The lineage takes a registry entry's approval: its bindings, the deferred-columns gate they
 * imply, the end of the schema_review pause when nothing else is pending, and (with a replay id)
 * the release of staged rows. A batch releases its own leftovers instead (`intake`).
 */
function registryApproval(
  s: ActiveLineage,
  events: LineageEvent[],
  a: RegistryApproval,
  replayId: string | null,
): ActiveLineage {
  s = push(s, events, [{ type: 'SchemaApprovedByRegistry', data: a }]);
  const blocking = a.bindings.some((b) => b.action === 'defer' && (b.pk_ordinal > 0 || b.not_null));
  if (blocking && !s.pause_reasons.includes('deferred_columns')) {
    s = push(s, events, [{ type: 'LineagePaused', data: { reason: 'deferred_columns' } }]);
  }
  if (!blocking && s.pause_reasons.includes('deferred_columns')) {
    s = push(s, events, [{ type: 'LineageResumed', data: { reason: 'deferred_columns' } }]);
  }
  if (!openGates(s, null, null) && s.pause_reasons.includes('schema_review')) {
    s = push(s, events, [{ type: 'LineageResumed', data: { reason: 'schema_review' } }]);
  }
  if (replayId && s.staged_rows > 0 && !gated(s)) {
    s = push(s, events, [
      { type: 'StagedRowsReleased', data: { replay_id: replayId, schema_hash: a.schema_hash } },
    ]);
  }
  return s;
}

function decideRegistryApproval(
  state: LineageState,
  d: Extract<LineageCommand, { type: 'ApplyRegistryApproval' }>['data'],
): LineageEvent[] {
  const s = requireLineage(state);
  if (s.coalesced?.registry_id === d.registry_id) return [];
  const waiting = (s.awaiting ?? {})[d.schema_hash] === d.registry_id;
  // Not waiting and not already on this hash: the approval does not concern this lineage (any more).
  if (!waiting && s.approved_hash !== d.schema_hash) return [];
  const events: LineageEvent[] = [];
  const { replay_id, policy: _policy, ...approval } = d;
  registryApproval(s, events, approval, replay_id);
  return events;
}

export function fleetEvents(s: ActiveLineage, fleet: string | null | undefined): LineageEvent[] {
  if (fleet === undefined || (s.fleet_id ?? null) === fleet) return [];
  return [{ type: 'LineageFleetAssigned', data: { fleet_id: fleet } }];
}

export function stagingReason(s: ActiveLineage, hash: string): StagingReason | null {
  if (s.pause_reasons.includes('schema_review') || s.pause_reasons.includes('deferred_columns'))
    return 'schema_review';
  if (s.pause_reasons.includes('circuit_breaker')) return 'lineage_paused';
  if (s.approved_hash !== hash) return 'schema_review';
  return null;
}

const gated = (s: ActiveLineage) => s.pause_reasons.some((r) => GATING.includes(r));

/**
 * Rows left in staging once nothing gates the lineage (e.g. rows that arrived while only volume
 * backpressure held it) go to the mirror ahead of any newer row: the release event precedes them.
 */
function releaseLeftovers(s: ActiveLineage, replayId: string): LineageEvent[] {
  if (s.staged_rows === 0 || gated(s) || s.approved_hash === null) return [];
  return [{ type: 'StagedRowsReleased', data: { replay_id: replayId, schema_hash: s.approved_hash } }];
}

/** Volume backpressure with hysteresis: pause above a cap, resume below resume_threshold_percent of both. */
function backpressure(s: ActiveLineage, policy: Policy, m: Minted): LineageEvent[] {
  const rows = s.staged_rows + s.replaying_rows;
  const bytes = s.staged_bytes + s.replaying_bytes;
  const paused = s.pause_reasons.includes('volume_backpressure');
  const over = rows > policy.max_pending_rows_per_lineage || bytes > policy.max_pending_bytes_per_lineage;
  if (over && !paused) {
    const detail =
      rows > policy.max_pending_rows_per_lineage ? 'staged row cap exceeded' : 'staged byte cap exceeded';
    return [
      {
        type: 'LineagePaused',
        data: { reason: 'volume_backpressure', detail: `${rows} rows, ${bytes} bytes pending` },
      },
      ...pauseDevice(s, `backpressure: ${detail}`, m),
    ];
  }
  const pct = policy.resume_threshold_percent / 100;
  if (
    paused &&
    rows < policy.max_pending_rows_per_lineage * pct &&
    bytes < policy.max_pending_bytes_per_lineage * pct
  ) {
    const after: ActiveLineage = {
      ...s,
      pause_reasons: s.pause_reasons.filter((r) => r !== 'volume_backpressure'),
    };
    return [
      { type: 'LineageResumed', data: { reason: 'volume_backpressure' } },
      ...resumeDevice(after, 'backpressure: backlog drained', m),
    ];
  }
  return [];
}

/** Reasons that stop the device itself (schema review never does: the cloud stages instead). */
const DEVICE_PAUSING: readonly PauseReason[] = ['volume_backpressure', 'circuit_breaker'];

function pauseDevice(s: ActiveLineage, reason: string, m: Minted): LineageEvent[] {
  if (s.device_paused) return [];
  return [control(s, 'pause_lineage', reason, m)];
}

function resumeDevice(s: ActiveLineage, reason: string, m: Minted): LineageEvent[] {
  if (!s.device_paused || s.pause_reasons.some((r) => DEVICE_PAUSING.includes(r))) return [];
  return [control(s, 'resume_lineage', reason, m)];
}

function control(
  s: ActiveLineage,
  kind: 'pause_lineage' | 'resume_lineage',
  reason: string,
  m: Minted,
): LineageEvent {
  return {
    type: 'ControlIssued',
    data: {
      control_id: m.new_control_id,
      control_kind: kind,
      source_table: s.source_table,
      server_watermark: s.kind === 'telemetry' ? s.last_batch_seq : s.last_commit_seq,
      reason,
      issued_at: m.now,
    },
  };
}

/** Append `more` to `events`, and return the state they lead to. */
export function push(
  state: ActiveLineage,
  events: LineageEvent[],
  more: readonly LineageEvent[],
): ActiveLineage {
  events.push(...more);
  return requireLineage(apply(state, more));
}

/**
 * A batch's rows: staged while something gates them; otherwise accepted, after any rows left in
 * staging (released first, so commit order holds). Then the backlog is checked for backpressure.
 */
export function intake(
  s: ActiveLineage,
  events: LineageEvent[],
  cmd: Minted & { policy: Policy },
  reason: StagingReason | null,
  staged: (reason: StagingReason) => LineageEvent,
  accepted: LineageEvent,
): LineageEvent[] {
  if (reason) {
    s = push(s, events, [staged(reason)]);
  } else {
    s = push(s, events, releaseLeftovers(s, cmd.new_replay_id));
    s = push(s, events, [accepted]);
  }
  push(s, events, backpressure(s, cmd.policy, cmd));
  return events;
}

/**
 * A batch id names one content (docs/exact-replication.md, "Batch identity"): a batch that reuses
 * a recent id with another digest is refused before anything of it is decided.
 */
export function checkBatchIdentity(s: ActiveLineage, batchId: string, digest: string | undefined): void {
  if (digest === undefined) return;
  const known = batchDigestOf(s, batchId);
  if (known !== undefined && known !== digest) {
    throw new DomainError(
      'batch_id_conflict',
      `batch ${batchId} was taken in before with other content (digest ${known}, now ${digest}); ` +
        'none of its rows was taken in. The device must give new content a new batch_id.',
      { batch_id: batchId, known_digest: known, digest },
    );
  }
}

/** A resync control and its event (docs/exact-replication.md, "Resync"). */
function resyncEvents(
  s: ActiveLineage,
  reason: 're_enrolment' | 'verify_repair' | 'operator',
  buckets: readonly number[] | null,
  ids: Readonly<{ resync_id: string; control_id: string; now: string }>,
): LineageEvent[] {
  const what = buckets === null ? 'the whole table' : `${buckets.length} key bucket(s)`;
  return [
    {
      type: 'ResyncRequested',
      data: { resync_id: ids.resync_id, control_id: ids.control_id, buckets, reason },
    },
    {
      type: 'ControlIssued',
      data: {
        control_id: ids.control_id,
        control_kind: 'resync',
        source_table: s.source_table,
        server_watermark: s.last_commit_seq,
        reason: `resync of ${what} (${reason})`,
        issued_at: ids.now,
        resync_id: ids.resync_id,
        buckets,
      },
    },
  ];
}

/**
 * A lineage that knows a schema hash without its columns (it started from a batch that did not
 * carry them: the device enrolled with an earlier lineage, deleted since) can never bind them, so
 * its review could never be approved. The cloud asks the device for its schema and its table
 * once, with a resync control; the columns arrive with the re-sent rows. Registry-governed
 * lineages get the columns from the registry entry instead.
 */
function reEnrolment(
  s: ActiveLineage,
  hash: string,
  cmd: Readonly<{ new_resync_id?: string; new_resync_control_id?: string; now: string }>,
): LineageEvent[] {
  if (cmd.new_resync_id === undefined || cmd.new_resync_control_id === undefined) return [];
  if (s.kind !== 'rows' || s.schemas[hash] || s.approved_hash === hash) return [];
  if (s.schema_resync || s.coalesced || (s.awaiting ?? {})[hash] !== undefined) return [];
  return resyncEvents(s, 're_enrolment', null, {
    resync_id: cmd.new_resync_id,
    control_id: cmd.new_resync_control_id,
    now: cmd.now,
  });
}

function requireRowsWithApproval(s: ActiveLineage, what: 'verify' | 'resync') {
  const code = what === 'verify' ? 'verify_unavailable' : 'resync_unavailable';
  if (s.kind !== 'rows') {
    throw new DomainError(code, `${s.source_table} is a telemetry lineage; only row lineages can ${what}`);
  }
  const schema = s.approved_hash ? s.schemas[s.approved_hash] : undefined;
  if (!s.approved_hash || (!schema && !s.coalesced)) {
    throw new DomainError(
      code,
      `no schema of ${s.source_table} is approved yet, so there is no mirror to ${what}. Approve its review first.`,
    );
  }
}

/** Source columns a verify digests: what the mirror holds (mirrored columns), key columns always. */
export function verifyColumns(s: ActiveLineage): string[] {
  return s.bindings.filter((b) => b.action === 'mirror' || b.pk_ordinal > 0).map((b) => b.column);
}

function decideRequestVerify(
  state: LineageState,
  d: Extract<LineageCommand, { type: 'RequestVerify' }>['data'],
): LineageEvent[] {
  const s = requireLineage(state);
  if (d.trigger === 'schedule') {
    // The schedule never stacks runs, nor asks while rows wait for a review or a reset.
    const last = lastVerify(s);
    const due =
      !last || Date.parse(d.now) - Date.parse(last.requested_at) >= (d.interval_minutes ?? 0) * 60_000;
    if (!due || gated(s) || s.kind !== 'rows' || !s.approved_hash) return [];
  }
  requireRowsWithApproval(s, 'verify');
  const columns = verifyColumns(s);
  if (columns.length === 0) {
    throw new DomainError(
      'verify_unavailable',
      `no column of ${s.source_table} is mirrored; nothing to verify`,
    );
  }
  return [
    {
      type: 'VerifyRequested',
      data: {
        verify_id: d.verify_id,
        control_id: d.control_id,
        columns,
        trigger: d.trigger,
        requested_at: d.now,
      },
    },
    {
      type: 'ControlIssued',
      data: {
        control_id: d.control_id,
        control_kind: 'verify',
        source_table: s.source_table,
        server_watermark: s.last_commit_seq,
        reason: `verify ${d.verify_id} (${d.trigger})`,
        issued_at: d.now,
        verify_id: d.verify_id,
        columns,
      },
    },
  ];
}

const sameColumns = (a: readonly string[], b: readonly string[]) =>
  a.length === b.length && [...a].sort().join('\u0000') === [...b].sort().join('\u0000');

function decideReportVerify(
  state: LineageState,
  d: Extract<LineageCommand, { type: 'ReportVerify' }>['data'],
): LineageEvent[] {
  const s = requireLineage(state);
  const r = d.report;
  const v = findVerify(s, r.verify_id);
  if (!v) {
    throw new DomainError(
      'unknown_verify_id',
      `verify ${r.verify_id} was not requested for this lineage (or is too old); the report was not recorded`,
    );
  }
  if (v.status !== 'requested') return []; // a repeated report
  if (!sameColumns(v.columns, r.columns)) {
    throw new DomainError(
      'verify_mismatch',
      `the report of verify ${r.verify_id} digests columns ${r.columns.join(', ')}; ${v.columns.join(', ')} were asked for`,
    );
  }
  return [
    {
      type: 'VerifyReported',
      data: {
        verify_id: r.verify_id,
        journal_epoch: r.journal_epoch,
        through_commit_seq: r.through_commit_seq,
        schema_hash: r.schema_hash,
        columns: r.columns,
        digests: r.digests,
        reported_at: d.now,
      },
    },
  ];
}

function decideCompleteVerify(
  state: LineageState,
  d: Extract<LineageCommand, { type: 'CompleteVerify' }>['data'],
): LineageEvent[] {
  const s = requireLineage(state);
  const v = findVerify(s, d.verify_id);
  if (!v)
    throw new DomainError('unknown_verify_id', `verify ${d.verify_id} was not requested for this lineage`);
  if (v.status === 'completed') return []; // the projector reported again (it restarted)
  if (v.status !== 'reported') {
    throw new DomainError('illegal_transition', `verify ${d.verify_id} has no device report yet`);
  }
  const buckets = [...new Set(d.divergent_buckets)].sort((a, b) => a - b);
  const repair = d.outcome === 'divergent' && buckets.length > 0;
  const completed: LineageEvent = {
    type: 'VerifyCompleted',
    data: {
      verify_id: d.verify_id,
      outcome: d.outcome,
      divergent_buckets: buckets,
      device_rows: d.device_rows,
      mirror_rows: d.mirror_rows,
      ...(d.detail !== undefined ? { detail: d.detail } : {}),
      ...(repair ? { resync_id: d.new_resync_id } : {}),
      completed_at: d.now,
    },
  };
  if (!repair) return [completed];
  return [
    completed,
    ...resyncEvents(s, 'verify_repair', buckets, {
      resync_id: d.new_resync_id,
      control_id: d.new_control_id,
      now: d.now,
    }),
  ];
}

function decideRequestResync(
  state: LineageState,
  d: Extract<LineageCommand, { type: 'RequestResync' }>['data'],
): LineageEvent[] {
  const s = requireLineage(state);
  if (s.kind !== 'rows') {
    throw new DomainError(
      'resync_unavailable',
      `${s.source_table} is a telemetry lineage; only row lineages resync`,
    );
  }
  const buckets = d.buckets === null ? null : [...new Set(d.buckets)].sort((a, b) => a - b);
  return resyncEvents(s, 'operator', buckets, {
    resync_id: d.resync_id,
    control_id: d.control_id,
    now: d.now,
  });
}

function decideRowBatch(
  state: LineageState,
  cmd: Extract<LineageCommand, { type: 'IngestRowBatch' }>['data'],
) {
  const { batch } = cmd;
  const events = register(state, cmd, batch.source_table, 'rows');
  let s = requireLineage(apply(state, events));
  checkBatchIdentity(s, batch.batch_id, cmd.payload_digest);
  s = push(s, events, fleetEvents(s, cmd.fleet_id));
  const seen = s.accepted[batch.journal_epoch] ?? [];
  const fresh = batch.rows.filter((r) => !inRanges(seen, r.commit_seq));
  const duplicates = batch.rows.length - fresh.length;
  if (fresh.length === 0) return events; // a retried batch: acknowledged, nothing changes
  s = push(
    s,
    events,
    governSchema(s, batch.schema_hash, batch.schema_columns, cmd.new_review_id, cmd.policy, cmd.registry),
  );
  s = push(s, events, reEnrolment(s, batch.schema_hash, cmd));
  const digest = cmd.payload_digest !== undefined ? { payload_digest: cmd.payload_digest } : {};
  const refused = fresh.filter((r) => r.op === 'refused');
  if (refused.length > 0) {
    s = push(s, events, [
      {
        type: 'RowsRefused',
        data: {
          batch_id: batch.batch_id,
          journal_epoch: batch.journal_epoch,
          schema_hash: batch.schema_hash,
          rows: refused,
          ...digest,
        },
      },
    ]);
  }
  const flowing = refused.length > 0 ? fresh.filter((r) => r.op !== 'refused') : fresh;
  if (flowing.length === 0) return events;
  const { rows, events: conflicting } = cloudWins(s, batch, flowing, cmd.new_write_control_id, cmd.now);
  s = push(
    s,
    events,
    conflicting.map((e) =>
      e.type === 'StateWriteConflictDetected' ? { ...e, data: { ...e.data, ...digest } } : e,
    ),
  );
  if (rows.length === 0) return events;
  const reason = stagingReason(s, batch.schema_hash);
  const common = {
    batch_id: batch.batch_id,
    journal_epoch: batch.journal_epoch,
    schema_hash: batch.schema_hash,
    rows,
    duplicates_skipped: duplicates,
    ...digest,
  };
  return intake(s, events, cmd, reason, (r) => ({ type: 'RowsStaged', data: { ...common, reason: r } }), {
    type: 'RowsAccepted',
    data: common,
  });
}

function decideFailure(
  state: LineageState,
  d: Extract<LineageCommand, { type: 'ReportMaterializationFailure' }>['data'],
) {
  let s = requireLineage(state);
  // Reported before (the projector restarted): one report per failing event and journal epoch.
  if (s.reported_failures.includes(failureKey(d.source_seq, d.journal_epoch))) return [];
  const events: LineageEvent[] = [];
  const count = d.permanent ? s.consecutive_failures + 1 : s.consecutive_failures;
  s = push(s, events, [
    {
      type: 'MaterializationFailed',
      data: {
        source_seq: d.source_seq,
        code: d.code,
        message: d.message,
        permanent: d.permanent,
        rows: d.rows,
        journal_epoch: d.journal_epoch,
        consecutive_failures: count,
      },
    },
  ]);
  if (
    d.permanent &&
    count >= d.policy.circuit_breaker_threshold &&
    !s.pause_reasons.includes('circuit_breaker')
  ) {
    s = push(s, events, [
      {
        type: 'LineagePaused',
        data: {
          reason: 'circuit_breaker',
          detail: `${count} permanent materialization errors; last: ${d.message}`,
        },
      },
    ]);
    s = push(s, events, pauseDevice(s, `circuit breaker: ${count} permanent materialization errors`, d));
  }
  push(s, events, backpressure(s, d.policy, d));
  return events;
}

function decideReset(
  state: LineageState,
  d: Extract<LineageCommand, { type: 'ResetMaterialization' }>['data'],
) {
  let s = requireLineage(state);
  const events: LineageEvent[] = [];
  const failing = s.consecutive_failures > 0 || s.pause_reasons.includes('circuit_breaker');
  // A healthy lineage has nothing to reset: no event, so the caller can say so.
  if (failing)
    s = push(s, events, [
      { type: 'MaterializationReset', data: { previous_failures: s.consecutive_failures } },
    ]);
  if (s.pause_reasons.includes('circuit_breaker')) {
    s = push(s, events, [{ type: 'LineageResumed', data: { reason: 'circuit_breaker' } }]);
  }
  s = push(s, events, releaseLeftovers(s, d.new_replay_id));
  s = push(s, events, resumeDevice(s, 'materialization reset by an operator', d));
  push(s, events, backpressure(s, d.policy, d));
  return events;
}

function findControl(s: ActiveLineage, controlId: string) {
  const c = s.controls.find((x) => x.control_id === controlId);
  if (!c) throw new DomainError('unknown_control_id', `control ${controlId} was not issued to this lineage`);
  return c;
}

function findReview(s: ActiveLineage, reviewId: string, actionVersion: number) {
  const review = s.reviews.find((r) => r.review_id === reviewId);
  if (!review) throw new DomainError('review_not_found', `review ${reviewId} not found`);
  if (review.action_version !== actionVersion) {
    throw new DomainError(
      'stale_action_version',
      `action_version ${actionVersion} is stale; the review is at ${review.action_version}`,
      { current_action_version: review.action_version, status: review.status },
    );
  }
  return review;
}

// eslint-disable-next-line no-control-regex -- rejecting control characters is the point
const MIRROR_NAME = /^[^\u0000-\u001f\u007f]{1,63}$/u;

export function bindColumns(
  s: ActiveLineage,
  hash: string,
  actions: readonly ColumnAction[] = [],
): ColumnBinding[] {
  const unbound = new Set(s.unbound_columns ?? []);
  return bindSchema(
    s.schemas[hash] ?? null,
    actions,
    s.bindings.filter((b) => !unbound.has(b.column)),
  );
}

/** The action a column's current binding stands for, so an approval can keep it. */
function actionOf(b: ColumnBinding): ColumnAction {
  switch (b.action) {
    case 'mirror':
      return b.target !== null && b.target !== b.column
        ? { column: b.column, action: 'mirror', mirror_column_name: b.target }
        : { column: b.column, action: 'mirror' };
    case 'map':
    case 'auto_create_and_map':
      return b.target !== null
        ? { column: b.column, action: b.action, data_point: b.target }
        : { column: b.column, action: b.action };
    case 'ignore':
    case 'defer':
      return { column: b.column, action: b.action };
    default:
      return assertNever(b.action, 'column action');
  }
}

/**
 * One binding per column of `schema`: the given actions; for a column without one, its current
 * binding (`previous`: a rename, ignore, defer or map stays as the operator left it); `mirror`
 * under its own name for a new column.
 */
export function bindSchema(
  schema: SchemaColumns | null,
  actions: readonly ColumnAction[] = [],
  previous: readonly ColumnBinding[] = [],
): ColumnBinding[] {
  if (!schema) {
    throw new DomainError(
      'invalid_column_actions',
      'the device has not sent the columns of this schema yet; wait for a batch with schema_columns',
    );
  }
  const byColumn = new Map<string, ColumnAction>();
  for (const a of actions) {
    if (!schema.columns.some((c) => c.name === a.column)) {
      throw new DomainError(
        'invalid_column_actions',
        `column ${JSON.stringify(a.column)} is not in the schema`,
      );
    }
    if (byColumn.has(a.column))
      throw new DomainError('invalid_column_actions', `column ${a.column} has two actions`);
    if (a.mirror_column_name !== undefined && !MIRROR_NAME.test(a.mirror_column_name)) {
      throw new DomainError(
        'invalid_column_actions',
        `mirror_column_name for ${a.column} must be 1-63 printable chars`,
      );
    }
    byColumn.set(a.column, a);
  }
  const kept = new Map(previous.map((b) => [b.column, actionOf(b)]));
  const targets = new Set<string>();
  return schema.columns.map((c) => {
    const carried = kept.get(c.name);
    // A key column may only be mirrored or deferred: a binding it had as a non-key column does not carry.
    const keep =
      carried && (c.pk_ordinal === 0 || carried.action === 'mirror' || carried.action === 'defer')
        ? carried
        : undefined;
    // A new column with no action is mirrored under its own name: the documented default.
    const a = byColumn.get(c.name) ?? keep ?? { column: c.name, action: 'mirror' as const };
    if (c.pk_ordinal > 0 && a.action !== 'mirror' && a.action !== 'defer') {
      throw new DomainError('invalid_column_actions', `key column ${c.name} must be mirrored or deferred`);
    }
    const target =
      a.action === 'mirror'
        ? (a.mirror_column_name ?? c.name)
        : a.action === 'ignore' || a.action === 'defer'
          ? null
          : (a.data_point ?? c.name);
    if (a.action === 'mirror' && target !== null) {
      const folded = target.toLowerCase();
      if (targets.has(folded))
        throw new DomainError('invalid_column_actions', `two columns mirror to ${target}`);
      targets.add(folded);
    }
    return {
      column: c.name,
      action: a.action,
      target,
      affinity: c.decl_type_affinity,
      pk_ordinal: c.pk_ordinal,
      not_null: c.not_null,
    };
  });
}

function decideApprove(state: LineageState, d: Extract<LineageCommand, { type: 'ApproveReview' }>['data']) {
  const s = requireLineage(state);
  const review = findReview(s, d.review_id, d.action_version);
  if (review.status !== 'in_review') {
    throw new DomainError('illegal_transition', `review is ${review.status}; claim it before approving`, {
      status: review.status,
    });
  }
  if (!s.schemas[review.schema_hash]) {
    throw new DomainError(
      'schema_columns_missing',
      s.schema_resync
        ? `the device has not sent the columns of this schema yet; the cloud asked it for them (resync ${s.schema_resync}). ` +
            'Nothing was approved; approve once `sluice reviews show` lists the columns.'
        : 'the device has not sent the columns of this schema yet; nothing was approved. Its next batch makes the cloud ask for them.',
      { schema_hash: review.schema_hash, ...(s.schema_resync ? { resync_id: s.schema_resync } : {}) },
    );
  }
  const bindings = bindColumns(s, review.schema_hash, d.column_actions);
  const events: LineageEvent[] = [
    {
      type: 'SchemaReviewApproved',
      data: {
        review_id: review.review_id,
        schema_hash: review.schema_hash,
        action_version: review.action_version + 1,
        bindings,
      },
    },
  ];
  const blocking = bindings.some((b) => b.action === 'defer' && (b.pk_ordinal > 0 || b.not_null));
  if (blocking && !s.pause_reasons.includes('deferred_columns')) {
    events.push({ type: 'LineagePaused', data: { reason: 'deferred_columns' } });
  }
  if (!blocking && s.pause_reasons.includes('deferred_columns')) {
    events.push({ type: 'LineageResumed', data: { reason: 'deferred_columns' } });
  }
  const otherOpen = openGates(s, review.review_id, review.schema_hash);
  if (!otherOpen && s.pause_reasons.includes('schema_review')) {
    events.push({ type: 'LineageResumed', data: { reason: 'schema_review' } });
  }
  const after = requireLineage(apply(s, events));
  if (after.staged_rows > 0 && !after.pause_reasons.some((r) => GATING.includes(r))) {
    events.push({
      type: 'StagedRowsReleased',
      data: { replay_id: d.replay_id, schema_hash: review.schema_hash },
    });
  }
  return events;
}

function requireUpload(s: ActiveLineage, uploadId: string) {
  const u = findUpload(s, uploadId);
  if (!u) throw new DomainError('unknown_upload', `upload ${uploadId} was not granted to this lineage`);
  return u;
}

function decideRequestUpload(
  state: LineageState,
  d: Extract<LineageCommand, { type: 'RequestUpload' }>['data'],
): LineageEvent[] {
  const r = d.request;
  const events = register(state, d, r.source_table, 'rows');
  const s = requireLineage(apply(state, events));
  if (s.kind !== 'rows') {
    throw new DomainError(
      'invalid_upload',
      `${r.source_table} is a telemetry lineage; uploads carry row changes`,
    );
  }
  const u = findUpload(s, r.upload_id);
  if (u) {
    if (u.status !== 'granted') return events; // finished: a late request grants nothing
    if (
      u.journal_epoch !== r.journal_epoch ||
      u.schema_hash !== r.schema_hash ||
      u.first_commit_seq !== r.first_commit_seq ||
      u.last_commit_seq !== r.last_commit_seq ||
      u.row_count !== r.row_count
    ) {
      throw new DomainError('upload_mismatch', `upload ${r.upload_id} was granted for another range`);
    }
    // Its grant still works (and is re-delivered until ACKed): a repeated request adds nothing.
    if (Date.parse(d.now) < Date.parse(u.expires_at)) return events;
  }
  events.push(
    {
      type: 'UploadGranted',
      data: {
        upload_id: r.upload_id,
        request_id: r.request_id,
        control_id: d.new_control_id,
        journal_epoch: r.journal_epoch,
        schema_hash: r.schema_hash,
        schema_columns: r.schema_columns ?? s.schemas[r.schema_hash] ?? null,
        first_commit_seq: r.first_commit_seq,
        last_commit_seq: r.last_commit_seq,
        row_count: r.row_count,
        expires_at: d.expires_at,
      },
    },
    {
      type: 'ControlIssued',
      data: {
        control_id: d.new_control_id,
        control_kind: 'url_grant',
        source_table: s.source_table,
        server_watermark: s.last_commit_seq,
        reason: `upload ${r.upload_id}`,
        issued_at: d.now,
      },
    },
  );
  return events;
}

/**
 * A chunk of an uploaded object enters the lineage like a row batch (same dedupe on
 * (journal_epoch, commit_seq), same staging and backpressure), with the upload id as batch id.
 */
function decideUploadChunk(
  state: LineageState,
  d: Extract<LineageCommand, { type: 'IngestUploadChunk' }>['data'],
): LineageEvent[] {
  const s = requireLineage(state);
  const u = requireUpload(s, d.upload_id);
  if (u.status !== 'granted' || d.chunk < u.chunks) return []; // taken before (a resumed finalize)
  if (d.chunk > u.chunks) {
    throw new DomainError(
      'upload_chunk_out_of_order',
      `chunk ${d.chunk} of ${u.upload_id}; expected ${u.chunks}`,
    );
  }
  for (const r of d.rows) {
    if (r.commit_seq < u.first_commit_seq || r.commit_seq > u.last_commit_seq) {
      throw new DomainError(
        'upload_content_invalid',
        `commit_seq ${r.commit_seq} lies outside the granted ${u.first_commit_seq}..${u.last_commit_seq}`,
      );
    }
  }
  const seen = s.accepted[u.journal_epoch] ?? [];
  const fresh = d.rows.filter((r) => !inRanges(seen, r.commit_seq));
  const duplicates = d.rows.length - fresh.length;
  const events: LineageEvent[] = [];
  const refused = fresh.filter((r) => r.op === 'refused');
  const flowing = refused.length > 0 ? fresh.filter((r) => r.op !== 'refused') : fresh;
  if (fresh.length > 0) {
    events.push(
      ...governSchema(s, u.schema_hash, u.schema_columns ?? undefined, d.new_review_id, d.policy, d.registry),
    );
    if (refused.length > 0) {
      events.push({
        type: 'RowsRefused',
        data: {
          batch_id: u.upload_id,
          journal_epoch: u.journal_epoch,
          schema_hash: u.schema_hash,
          rows: refused,
        },
      });
    }
  }
  if (flowing.length > 0) {
    const governed = requireLineage(apply(s, events));
    const common = {
      batch_id: u.upload_id,
      journal_epoch: u.journal_epoch,
      schema_hash: u.schema_hash,
      rows: flowing,
      duplicates_skipped: duplicates,
    };
    intake(
      governed,
      events,
      d,
      stagingReason(governed, u.schema_hash),
      (r) => ({ type: 'RowsStaged', data: { ...common, reason: r } }),
      { type: 'RowsAccepted', data: common },
    );
  }
  events.push({
    type: 'UploadChunkAppended',
    data: { upload_id: u.upload_id, chunk: d.chunk, rows: fresh.length, duplicates_skipped: duplicates },
  });
  return events;
}

export function decide(command: LineageCommand, state: LineageState): readonly LineageEvent[] {
  switch (command.type) {
    case 'IngestRowBatch':
      return decideRowBatch(state, command.data);
    case 'IngestTelemetryBatch':
      return decideTelemetryBatch(state, command.data);
    case 'ClaimReview': {
      const s = requireLineage(state);
      const review = findReview(s, command.data.review_id, command.data.action_version);
      if (review.status !== 'queued') {
        throw new DomainError(
          'illegal_transition',
          `review is ${review.status}; only a queued review can be claimed`,
          {
            status: review.status,
          },
        );
      }
      return [
        {
          type: 'SchemaReviewClaimed',
          data: { review_id: review.review_id, action_version: review.action_version + 1 },
        },
      ];
    }
    case 'ApproveReview':
      return withDataPoints(state, decideApprove(state, command.data), command.data);
    case 'RejectReview': {
      const s = requireLineage(state);
      if (command.data.reason.trim() === '') {
        throw new DomainError(
          'reason_required',
          'a rejection needs a reason (it is kept with the review for whoever reopens it); nothing was changed',
        );
      }
      const review = findReview(s, command.data.review_id, command.data.action_version);
      if (review.status !== 'in_review') {
        throw new DomainError('illegal_transition', `review is ${review.status}; claim it before rejecting`, {
          status: review.status,
        });
      }
      return [
        {
          type: 'SchemaReviewRejected',
          data: {
            review_id: review.review_id,
            action_version: review.action_version + 1,
            reason: command.data.reason,
          },
        },
      ];
    }
    case 'ReopenReview': {
      const s = requireLineage(state);
      const review = findReview(s, command.data.review_id, command.data.action_version);
      if (review.status !== 'rejected') {
        throw new DomainError(
          'illegal_transition',
          `review is ${review.status}; only a rejected review can be reopened`,
          { status: review.status },
        );
      }
      return [
        {
          type: 'SchemaReviewReopened',
          data: { review_id: review.review_id, action_version: review.action_version + 1 },
        },
      ];
    }
    case 'RequestVerify':
      return decideRequestVerify(state, command.data);
    case 'ReportVerify':
      return decideReportVerify(state, command.data);
    case 'CompleteVerify':
      return decideCompleteVerify(state, command.data);
    case 'RequestResync':
      return decideRequestResync(state, command.data);
    case 'ObserveSchema':
      return decideObserveSchema(state, command.data);
    case 'CompleteReplay': {
      const d = command.data;
      let s = requireLineage(state);
      if (s.replay?.replay_id !== d.replay_id || s.replay.done) return [];
      const events: LineageEvent[] = [];
      s = push(s, events, [{ type: 'ReplayCompleted', data: { replay_id: d.replay_id, rows: d.rows } }]);
      if (d.policy && d.new_control_id && d.new_replay_id && d.now) {
        const m = { new_control_id: d.new_control_id, new_replay_id: d.new_replay_id, now: d.now };
        push(s, events, backpressure(s, d.policy, m));
      }
      return events;
    }
    case 'ReportMaterializationFailure':
      return decideFailure(state, command.data);
    case 'ResetMaterialization':
      return decideReset(state, command.data);
    case 'RecordControlDelivery': {
      const s = requireLineage(state);
      const c = findControl(s, command.data.control_id);
      if (c.acknowledged) return [];
      return [
        {
          type: 'ControlDelivered',
          data: {
            control_id: c.control_id,
            attempt: c.deliveries + 1,
            delivered_at: command.data.delivered_at,
          },
        },
      ];
    }
    case 'AcknowledgeControl': {
      const s = requireLineage(state);
      const c = findControl(s, command.data.control_id);
      if (c.acknowledged) return []; // a re-ACK of a redelivered control
      return [
        {
          type: 'ControlAcknowledged',
          data: { control_id: c.control_id, acknowledged_at: command.data.acknowledged_at },
        },
      ];
    }
    case 'DeleteLineage': {
      requireLineage(state);
      return [{ type: 'LineageDeleted', data: { reason: command.data.reason } }];
    }
    case 'ApplyRegistryApproval':
      return withDataPoints(state, decideRegistryApproval(state, command.data), command.data);
    case 'AssignFleet':
      return fleetEvents(requireLineage(state), command.data.fleet_id);
    case 'SetLineageAuthority':
      return decideAuthority(requireLineage(state), command.data.authority);
    case 'WriteCloudRows':
      return decideWrite(requireLineage(state), command.data);
    case 'RequestUpload':
      return decideRequestUpload(state, command.data);
    case 'IngestUploadChunk':
      return decideUploadChunk(state, command.data);
    case 'CompleteUpload': {
      const s = requireLineage(state);
      const u = requireUpload(s, command.data.upload_id);
      if (u.status !== 'granted') return [];
      const d = command.data;
      if (d.chunks !== u.chunks || d.rows_read !== u.row_count) {
        return [
          {
            type: 'UploadFailed',
            data: {
              upload_id: u.upload_id,
              code: 'upload_row_count_mismatch',
              message:
                `the object held ${d.rows_read} rows in ${d.chunks} chunks; the device announced ${u.row_count} ` +
                `and ${u.chunks} chunks were taken in`,
            },
          },
        ];
      }
      return [
        {
          type: 'UploadCompleted',
          data: { upload_id: u.upload_id, chunks: u.chunks, rows: u.rows, duplicates_skipped: u.duplicates },
        },
      ];
    }
    case 'FailUpload': {
      const s = requireLineage(state);
      const u = requireUpload(s, command.data.upload_id);
      if (u.status !== 'granted') return [];
      return [{ type: 'UploadFailed', data: { ...command.data, upload_id: u.upload_id } }];
    }
    default:
      return assertNever(command, 'lineage command');
  }
}

export const lineageDecider = {
  decide,
  evolve,
  initialState: (): LineageState => ({ status: 'unregistered' }),
};
