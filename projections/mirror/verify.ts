/**
 * Verify (docs/verify.md): the mirror's side of the comparison. A `VerifyReported` carries the
 * device's per-bucket digests at a journal position; it is a lineage event ordered after every
 * row it covers and before any later one (the agent sends nothing more of the table until the
 * report is out), so comparing while folding it compares the mirror at exactly that position.
 * The comparison is recorded (`edge_verify_runs`) and reported to the domain after the commit,
 * through the same outbox as failure reports (`edge_mirror_reports`), so a crash between the
 * commit and the send does not lose it.
 */
import type { LineageEvent } from '../../domain/lineage/events';
import { BucketDigests, divergentBuckets } from '../../domain/protocol/wire-values';
import type { ApplyContext, CommandSender, Tx, VerifyOutcomeReport } from '../runner/types';
import type { MaterializedLineageTable } from '../store/schema';
import { coalescedTarget } from './coalesced';
import { keyColumns, type MirrorColumn } from './columns';
import { type VerifyOutboxEntry, currentTable, targetOf } from './registry';
import { readMirrorRows } from './write';

type Reported = Extract<LineageEvent, { type: 'VerifyReported' }>['data'];
type Completed = Extract<LineageEvent, { type: 'VerifyCompleted' }>['data'];

/** The outbox key of a verify outcome: failure reports use the journal epoch, never this prefix. */
export const verifyOutboxKey = (verifyId: string): string => `verify:${verifyId}`;

type Comparison = Omit<VerifyOutcomeReport, 'verify_id'>;

const notComparable = (detail: string, device_rows: number): Comparison => ({
  outcome: 'not_comparable',
  divergent_buckets: [],
  device_rows,
  mirror_rows: 0,
  detail,
});

async function compare(
  tx: Tx,
  ctx: ApplyContext,
  l: MaterializedLineageTable,
  d: Reported,
): Promise<Comparison> {
  const deviceRows = d.digests.reduce((n, b) => n + b.rows, 0);
  const held = await tx
    .selectFrom('edge_mirror_held_rows')
    .select((eb) => eb.fn.countAll<number | bigint | string>().as('n'))
    .where('lineage_id', '=', l.lineage_id)
    .executeTakeFirst();
  const heldRows = Number(held?.n ?? 0);
  if (heldRows > 0) {
    return notComparable(
      `${heldRows} staged row(s) of this lineage are not materialized yet; verify again once they are released`,
      deviceRows,
    );
  }
  const failed = await tx
    .selectFrom('edge_mirror_reports')
    .select('source_seq')
    .where('lineage_id', '=', l.lineage_id)
    .where('journal_epoch', 'not like', 'verify:%')
    .executeTakeFirst();
  if (failed) {
    return notComparable(
      `rows that failed to materialize (stream sequence ${failed.source_seq}) are on their way to staging; ` +
        'verify again once they are replayed',
      deviceRows,
    );
  }
  const coalesced = await coalescedTarget(tx, l);
  const table = coalesced ? undefined : await currentTable(tx, l.lineage_id);
  const target = coalesced ?? (table ? targetOf(table) : undefined);
  if (!target) return notComparable('no mirror table is provisioned for this lineage', deviceRows);
  const bound = target.columns.filter((c) => c.bound);
  const bySource = new Map(bound.map((c) => [c.source, c]));
  const unbound = d.columns.filter((c) => !bySource.has(c));
  if (unbound.length > 0) {
    return notComparable(
      `column(s) ${unbound.join(', ')} are not mirrored by the current approval`,
      deviceRows,
    );
  }
  const keys = new Set(keyColumns(bound).map((c) => c.source));
  const others: MirrorColumn[] = d.columns.filter((c) => !keys.has(c)).map((c) => bySource.get(c)!);
  const rows = await readMirrorRows(tx, ctx.dialect, target, others);
  const digests = new BucketDigests();
  for (const { pk, row } of rows) digests.addRow(pk, { ...row, ...pk }, d.columns);
  const divergent = divergentBuckets(d.digests, digests.list());
  return {
    outcome: divergent.length === 0 ? 'equal' : 'divergent',
    divergent_buckets: divergent,
    device_rows: deviceRows,
    mirror_rows: rows.length,
  };
}

/** VerifyReported: compare, record, and queue the outcome for the domain. */
export async function verifyReported(
  tx: Tx,
  ctx: ApplyContext,
  l: MaterializedLineageTable,
  d: Reported,
  commands: CommandSender | undefined,
): Promise<void> {
  const c = await compare(tx, ctx, l, d);
  await tx
    .insertInto('edge_verify_runs')
    .values({
      lineage_id: l.lineage_id,
      verify_id: d.verify_id,
      project_id: l.project_id,
      outcome: c.outcome,
      detail: c.detail ?? null,
      divergent_buckets: JSON.stringify(c.divergent_buckets),
      device_rows: c.device_rows,
      mirror_rows: c.mirror_rows,
      journal_epoch: d.journal_epoch,
      through_commit_seq: d.through_commit_seq,
      schema_hash: d.schema_hash,
      columns: JSON.stringify(d.columns),
      stream_seq: ctx.seq,
      reported_at: ctx.occurred_at,
      completed_at: null,
      resync_id: null,
    })
    // One comparison per verify: a repeated report keeps the first (the domain takes one outcome).
    .onConflict((oc) => oc.columns(['lineage_id', 'verify_id']).doNothing())
    .execute();
  const info: VerifyOutcomeReport = { verify_id: d.verify_id, ...c };
  const entry: VerifyOutboxEntry = { kind: 'verify', ...info };
  await tx
    .insertInto('edge_mirror_reports')
    .values({
      lineage_id: l.lineage_id,
      source_seq: ctx.seq,
      journal_epoch: verifyOutboxKey(d.verify_id),
      report: JSON.stringify(entry),
    })
    .onConflict((oc) => oc.columns(['lineage_id', 'source_seq', 'journal_epoch']).doNothing())
    .execute();
  const send = commands?.reportVerifyOutcome?.bind(commands);
  if (send) ctx.afterCommit(() => send(l.lineage_id, info));
}

/** VerifyCompleted: the domain took the outcome; the outbox copy goes, the run shows it. */
export async function verifyCompleted(
  tx: Tx,
  ctx: ApplyContext,
  lineageId: string,
  d: Completed,
): Promise<void> {
  await tx
    .deleteFrom('edge_mirror_reports')
    .where('lineage_id', '=', lineageId)
    .where('journal_epoch', '=', verifyOutboxKey(d.verify_id))
    .execute();
  await tx
    .updateTable('edge_verify_runs')
    .set({ completed_at: ctx.occurred_at, resync_id: d.resync_id ?? null })
    .where('lineage_id', '=', lineageId)
    .where('verify_id', '=', d.verify_id)
    .execute();
}
