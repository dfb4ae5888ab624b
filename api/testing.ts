/** Test helpers of the operator surfaces: lineages decided through the real handler and event store. */
import { uuidv7 } from 'uuidv7';
import { DEFAULT_POLICY } from '../domain/policy/policy';
import { schemaHash } from '../domain/protocol/fingerprint';
import type { LineageCommandHandler } from '../worker/handler';
import { DEVICE_STATE } from '../tests/support/fixtures';

/**
 * One row batch of `device_state` (ids `seqs`, mode `m<seq>`) decided by the handler: a new
 * lineage's first batch queues a review, pauses it and stages the rows.
 */
export async function ingestRows(
  handler: LineageCommandHandler,
  o: {
    project_id: string;
    lineage_id: string;
    device_name: string;
    device_id?: string;
    seqs: readonly number[];
    journal_epoch?: string;
  },
): Promise<void> {
  const rows = o.seqs.map((s) => ({
    commit_seq: s,
    op: 'insert' as const,
    pk: { id: s },
    row: { id: s, mode: `m${s}` },
  }));
  await handler.execute(
    o.lineage_id,
    {
      type: 'IngestRowBatch',
      data: {
        project_id: o.project_id,
        device_id: o.device_id ?? uuidv7(),
        device_name: o.device_name,
        new_lineage_id: o.lineage_id,
        new_review_id: uuidv7(),
        new_control_id: uuidv7(),
        new_replay_id: uuidv7(),
        now: new Date().toISOString(),
        policy: DEFAULT_POLICY,
        batch: {
          format_version: 1,
          capture_strategy: 'sqlite_row_batch_v1',
          batch_id: uuidv7(),
          journal_epoch: o.journal_epoch ?? uuidv7(),
          source_table: 'device_state',
          schema_hash: schemaHash(DEVICE_STATE),
          schema_columns: DEVICE_STATE,
          first_commit_seq: Math.min(...o.seqs),
          last_commit_seq: Math.max(...o.seqs),
          rows,
        },
      },
    },
    { decision_id: uuidv7() },
  );
}
