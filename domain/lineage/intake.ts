/**
 * Intake of a row batch (SPEC §3, §5): dedupe on (journal_epoch, commit_seq), batch identity,
 * schema governance, refused rows, the cloud_authoritative conflict rule, then staging or
 * acceptance and the backpressure check. Telemetry batches and upload chunks share `intake`.
 */
import type { RowBatch } from '../protocol/contracts';
import type { Policy } from '../policy/policy';
import type { RegistryView } from '../registry/view';
import { DomainError } from '../shared/errors';
import { backpressure } from './backpressure';
import { type Identity, type Minted, apply, push, requireRows } from './common';
import type { LineageEvent, StagingReason } from './events';
import { governSchema } from './governance';
import { fleetEvents, register } from './lifecycle';
import { reEnrolment } from './resync';
import { releaseLeftovers, stagingReason } from './staging';
import { type ActiveLineage, type LineageState, batchDigestOf, inRanges } from './state';
import { cloudWins } from './write-back';

export type IngestRowBatchData = Identity &
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

/**
 * A batch's rows: staged while something gates them; otherwise accepted, after any rows left in
 * staging (released first, so commit order holds). Then the backlog is checked for backpressure.
 */
export function intake<S extends ActiveLineage>(
  s: S,
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

export function decideRowBatch(state: LineageState, cmd: IngestRowBatchData): LineageEvent[] {
  const { batch } = cmd;
  const events = register(state, cmd, batch.source_table, 'rows');
  // The table's lineage captures telemetry: the batch is refused and nothing of it is decided.
  let s = requireRows(apply(state, events), 'illegal_transition', 'a batch of row changes cannot enter it');
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
