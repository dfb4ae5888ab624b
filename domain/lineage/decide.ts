import type { RowBatch, TelemetryBatch } from '../protocol/contracts';
import type { Policy } from '../policy/policy';
import { assertNever } from '../shared/decider';
import { DomainError } from '../shared/errors';
import { classifySchema } from './classify';
import type { ColumnAction, ColumnBinding, LineageEvent, PauseReason, StagingReason } from './events';
import { type ActiveLineage, type LineageState, evolve, inRanges, isPaused } from './state';

type Identity = Readonly<{ project_id: string; device_id: string; device_name: string }>;

/** Commands carry every id, time and policy the decision needs: the decider itself is pure. */
export type LineageCommand =
  | Readonly<{
      type: 'IngestRowBatch';
      data: Identity & { batch: RowBatch; new_lineage_id: string; new_review_id: string; policy: Policy };
    }>
  | Readonly<{
      type: 'IngestTelemetryBatch';
      data: Identity & {
        batch: TelemetryBatch;
        new_lineage_id: string;
        new_review_id: string;
        policy: Policy;
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
      };
    }>
  | Readonly<{ type: 'RejectReview'; data: { review_id: string; action_version: number; reason: string } }>
  | Readonly<{ type: 'CompleteReplay'; data: { replay_id: string; rows: number } }>
  | Readonly<{ type: 'DeleteLineage'; data: { reason: string } }>;

export type LineageCommandType = LineageCommand['type'];

/** Gate reasons that hold rows in staging; volume backpressure alone drains staging instead. */
const GATING: readonly PauseReason[] = ['schema_review', 'deferred_columns', 'circuit_breaker'];

function requireLineage(state: LineageState): ActiveLineage {
  if (state.status === 'registered') return state;
  if (state.status === 'deleted')
    throw new DomainError('lineage_deleted', `lineage ${state.lineage_id} was deleted`);
  throw new DomainError('not_found', 'lineage not found');
}

function apply(state: LineageState, events: readonly LineageEvent[]): LineageState {
  return events.reduce(evolve, state);
}

function register(
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
      },
    },
  ];
}

/** Decide what a batch's schema hash means for the lineage: observe, classify, maybe review and pause. */
function governSchema(
  s: ActiveLineage,
  hash: string,
  columns: RowBatch['schema_columns'],
  reviewId: string,
): LineageEvent[] {
  const events: LineageEvent[] = [];
  const known = Object.hasOwn(s.classifications, hash);
  if (!known || (columns && !s.schemas[hash])) {
    const incoming = columns ?? s.schemas[hash] ?? null;
    const classification = classifySchema(s, hash, incoming);
    events.push({
      type: 'SchemaVersionObserved',
      data: { schema_hash: hash, schema_columns: incoming, classification },
    });
    if (known) return events;
    // Additive continuation is a policy (issue #4); until then every unmapped hash goes to review.
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

function stagingReason(s: ActiveLineage, hash: string): StagingReason | null {
  if (s.pause_reasons.includes('schema_review') || s.pause_reasons.includes('deferred_columns'))
    return 'schema_review';
  if (isPaused(s)) return 'lineage_paused';
  if (s.approved_hash !== hash) return 'schema_review';
  return null;
}

function decideRowBatch(
  state: LineageState,
  cmd: Extract<LineageCommand, { type: 'IngestRowBatch' }>['data'],
) {
  const { batch } = cmd;
  const events = register(state, cmd, batch.source_table, 'rows');
  const registered = requireLineage(apply(state, events));
  const seen = registered.accepted[batch.journal_epoch] ?? [];
  const fresh = batch.rows.filter((r) => !inRanges(seen, r.commit_seq));
  const duplicates = batch.rows.length - fresh.length;
  if (fresh.length === 0) return events; // a retried batch: acknowledged, nothing changes
  const schemaEvents = governSchema(registered, batch.schema_hash, batch.schema_columns, cmd.new_review_id);
  events.push(...schemaEvents);
  const s = requireLineage(apply(registered, schemaEvents));
  const reason = stagingReason(s, batch.schema_hash);
  const common = {
    batch_id: batch.batch_id,
    journal_epoch: batch.journal_epoch,
    schema_hash: batch.schema_hash,
    rows: fresh,
    duplicates_skipped: duplicates,
  };
  events.push(
    reason ? { type: 'RowsStaged', data: { ...common, reason } } : { type: 'RowsAccepted', data: common },
  );
  return events;
}

function decideTelemetryBatch(
  state: LineageState,
  cmd: Extract<LineageCommand, { type: 'IngestTelemetryBatch' }>['data'],
) {
  const { batch } = cmd;
  const events = register(state, cmd, batch.source_table, 'telemetry');
  const registered = requireLineage(apply(state, events));
  if (batch.batch_seq <= registered.last_batch_seq) return events; // same id + seq: acknowledged no-op
  const schemaEvents = governSchema(registered, batch.schema_hash, batch.schema_columns, cmd.new_review_id);
  events.push(...schemaEvents);
  const s = requireLineage(apply(registered, schemaEvents));
  const reason = stagingReason(s, batch.schema_hash);
  const common = {
    batch_id: batch.batch_id,
    batch_seq: batch.batch_seq,
    schema_hash: batch.schema_hash,
    rows: batch.rows,
  };
  events.push(
    reason
      ? { type: 'TelemetryStaged', data: { ...common, reason } }
      : { type: 'TelemetryAccepted', data: common },
  );
  return events;
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
  const schema = s.schemas[hash];
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
  const targets = new Set<string>();
  return schema.columns.map((c) => {
    // A column with no action is mirrored under its own name: the documented default.
    const a = byColumn.get(c.name) ?? { column: c.name, action: 'mirror' as const };
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
  const otherOpen = s.reviews.some(
    (r) => r.review_id !== review.review_id && (r.status === 'queued' || r.status === 'in_review'),
  );
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
      return decideApprove(state, command.data);
    case 'RejectReview': {
      const s = requireLineage(state);
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
    case 'CompleteReplay': {
      const s = requireLineage(state);
      if (s.replay?.replay_id !== command.data.replay_id || s.replay.done) return [];
      return [{ type: 'ReplayCompleted', data: command.data }];
    }
    case 'DeleteLineage': {
      requireLineage(state);
      return [{ type: 'LineageDeleted', data: { reason: command.data.reason } }];
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
