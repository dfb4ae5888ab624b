/**
 * The mirror's own bookkeeping: which physical table serves a lineage (`edge_mirror_tables`), and
 * the materialization failures it could not get past (`edge_mirror_failures`, counters on
 * `edge_mirror_lineages`).
 */
import type { RowChange } from '../../domain/protocol/contracts';
import type {
  ApplyContext,
  CommandSender,
  Db,
  Log,
  MaterializationFailure,
  Tx,
  VerifyOutcomeReport,
} from '../runner/types';
import { errorCode } from '../store/dialect';
import { mirrorTableName } from '../store/identifiers';
import type { EdgeMirrorTablesTable, MaterializedLineageTable } from '../store/schema';
import type { MirrorColumn } from './columns';
import type { MirrorOp, MirrorTarget, RowFailure } from './write';

export async function mirrorLineage(
  tx: Tx,
  lineageId: string,
): Promise<MaterializedLineageTable | undefined> {
  return tx
    .selectFrom('edge_mirror_lineages')
    .selectAll()
    .where('lineage_id', '=', lineageId)
    .executeTakeFirst();
}

export async function currentTable(tx: Tx, lineageId: string): Promise<EdgeMirrorTablesTable | undefined> {
  return tx
    .selectFrom('edge_mirror_tables')
    .selectAll()
    .where('lineage_id', '=', lineageId)
    .where('status', '=', 'current')
    .executeTakeFirst();
}

export const columnsOf = (t: EdgeMirrorTablesTable): MirrorColumn[] =>
  JSON.parse(t.columns) as MirrorColumn[];

export const targetOf = (t: EdgeMirrorTablesTable): MirrorTarget => ({
  lineage_id: t.lineage_id,
  device_id: t.device_id,
  table: t.table_name,
  columns: columnsOf(t),
});

/**
 * `edge_mirror_{device8}_{table}`, unless another lineage already holds that name (two devices
 * whose ids share their first 8 hex digits, or a re-created lineage): then a hash of this
 * lineage's id is appended. Deterministic in event order, so a rebuild picks the same names.
 */
export async function uniqueTableName(
  tx: Tx,
  l: MaterializedLineageTable,
  generation: number,
): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    const salt = attempt === 0 ? '' : `${l.lineage_id}:${attempt}`;
    const name = mirrorTableName(l.device_id, l.source_table, generation, salt);
    const taken = await tx
      .selectFrom('edge_mirror_tables')
      .select('table_name')
      .where('table_name', '=', name)
      .executeTakeFirst();
    if (!taken) return name;
  }
}

/** The ordinal of a journal epoch for this lineage, assigned on its first appearance. */
export async function epochOrdinal(tx: Tx, lineageId: string, epoch: string): Promise<number> {
  const known = await tx
    .selectFrom('edge_mirror_epochs')
    .select('ordinal')
    .where('lineage_id', '=', lineageId)
    .where('journal_epoch', '=', epoch)
    .executeTakeFirst();
  if (known) return known.ordinal;
  const last = await tx
    .selectFrom('edge_mirror_epochs')
    .select((eb) => eb.fn.max('ordinal').as('m'))
    .where('lineage_id', '=', lineageId)
    .executeTakeFirst();
  const ordinal = Number(last?.m ?? 0) + 1;
  await tx
    .insertInto('edge_mirror_epochs')
    .values({ lineage_id: lineageId, journal_epoch: epoch, ordinal })
    .execute();
  return ordinal;
}

/** Failures of one event, summed over its chunks, recorded once. */
export class FailureTally {
  first: unknown = undefined;
  readonly ops: MirrorOp[] = [];

  get count(): number {
    return this.ops.length;
  }
  add(failures: readonly RowFailure[]): void {
    for (const f of failures) this.note(f.err, f.op);
  }
  note(err: unknown, op: MirrorOp): void {
    this.first ??= err;
    this.ops.push(op);
  }
  /** A failure that concerns no row (e.g. provisioning DDL). */
  fail(err: unknown): void {
    this.first ??= err;
  }
}

const codeOf = (err: unknown): string =>
  errorCode(err) ?? (err instanceof Error && err.name !== 'Error' ? err.name : 'error');
const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err)).slice(0, 2000);

const toRowChange = (op: MirrorOp): RowChange => ({
  commit_seq: op.commit_seq,
  op: op.op,
  pk: op.pk as RowChange['pk'],
  row: op.row as RowChange['row'],
  ...(op.sweep
    ? { sweep: { ...op.sweep, buckets: op.sweep.buckets === null ? null : [...op.sweep.buckets] } }
    : {}),
});

/**
 * Make a permanent failure visible: a row in edge_mirror_failures (with the stream sequence, so
 * the rows can be found again in the event log), the lineage's error count and last error, a
 * log line, and — after commit, outside rebuilds — a report to the domain, which stages the rows.
 */
export async function recordFailure(
  tx: Tx,
  ctx: ApplyContext,
  l: MaterializedLineageTable,
  eventType: string,
  tally: FailureTally,
  deps: { commands?: CommandSender; log: Log },
): Promise<void> {
  if (tally.first === undefined) return;
  const code = codeOf(tally.first);
  const message = messageOf(tally.first);
  await tx
    .insertInto('edge_mirror_failures')
    .values({
      lineage_id: l.lineage_id,
      stream_seq: ctx.seq,
      event_index: ctx.index,
      project_id: l.project_id,
      event_type: eventType,
      code,
      message,
      failed_rows: tally.count,
      sample_keys: JSON.stringify(tally.ops.slice(0, 10).map((o) => o.pk)),
      occurred_at: ctx.occurred_at,
    })
    .onConflict((oc) => oc.columns(['lineage_id', 'stream_seq', 'event_index']).doNothing())
    .execute();
  await tx
    .updateTable('edge_mirror_lineages')
    .set((eb) => ({
      materialization_errors: eb('materialization_errors', '+', 1),
      failed_rows: eb('failed_rows', '+', tally.count),
      last_error: `${code}: ${message}`,
      last_error_at: ctx.occurred_at,
    }))
    .where('lineage_id', '=', l.lineage_id)
    .execute();
  if (!ctx.rebuilding) {
    deps.log.warn(
      {
        lineage_id: l.lineage_id,
        seq: ctx.seq,
        event_type: eventType,
        code,
        failed_rows: tally.count,
        err: message,
      },
      'mirror could not materialize rows; recorded on the lineage (see materialization errors), the projection goes on',
    );
  }
  // The outbox copy is written whether or not a sender is configured, so the read store stays a
  // function of the events alone (rebuilds reproduce it); only the send depends on the sender.
  const report = deps.commands?.reportMaterializationFailure?.bind(deps.commands);
  const byEpoch = new Map<string | null, RowChange[]>();
  for (const op of tally.ops) {
    const list = byEpoch.get(op.journal_epoch) ?? [];
    list.push(toRowChange(op));
    byEpoch.set(op.journal_epoch, list);
  }
  if (byEpoch.size === 0) byEpoch.set(null, []);
  let reports = reportsOf.get(tx);
  if (!reports) {
    reports = new Map();
    reportsOf.set(tx, reports);
  }
  for (const [journal_epoch, rows] of byEpoch) {
    // The domain takes one report per (stream message, journal epoch): a second failing event of
    // the same message (a release and the batch that follows it, decided together) joins the
    // report already queued, or its rows would never be staged and never replayed.
    const key = `${l.lineage_id}\u0000${ctx.seq}\u0000${journal_epoch ?? ''}`;
    const queued = reports.get(key);
    if (queued) {
      queued.rows.push(...rows);
      await keepReport(tx, l.lineage_id, queued);
      continue;
    }
    const info = {
      source_seq: ctx.seq,
      event_type: eventType,
      code,
      message,
      permanent: true,
      rows: [...rows],
      journal_epoch,
    };
    reports.set(key, info);
    await keepReport(tx, l.lineage_id, info);
    if (report) ctx.afterCommit(() => report(l.lineage_id, info));
  }
}

/**
 * Reports queued in a transaction, by (lineage, message, epoch), until it commits. Keyed by the
 * transaction object: a batch that is rolled back and retried starts from an empty map.
 */
/** The outbox copy of a report, in the failure's own transaction (see edge_mirror_reports). */
async function keepReport(tx: Tx, lineageId: string, info: MaterializationFailure): Promise<void> {
  const report = JSON.stringify(info);
  await tx
    .insertInto('edge_mirror_reports')
    .values({
      lineage_id: lineageId,
      source_seq: info.source_seq,
      journal_epoch: info.journal_epoch ?? '',
      report,
    })
    .onConflict((oc) => oc.columns(['lineage_id', 'source_seq', 'journal_epoch']).doUpdateSet({ report }))
    .execute();
}

/** The domain took the report (its MaterializationFailed is back): the outbox copy can go. */
export async function reportTaken(
  tx: Tx,
  lineageId: string,
  sourceSeq: number,
  epoch: string | null,
): Promise<void> {
  await tx
    .deleteFrom('edge_mirror_reports')
    .where('lineage_id', '=', lineageId)
    .where('source_seq', '=', sourceSeq)
    .where('journal_epoch', '=', epoch ?? '')
    .execute();
}

/** A verify outcome in the report outbox (written by verify.ts), told apart from failures by `kind`. */
export type VerifyOutboxEntry = VerifyOutcomeReport & { kind: 'verify' };

/** After a (re)start has caught up: reports still in the outbox never reached the domain. */
export async function resendPendingReports(
  db: Db,
  commands: CommandSender | undefined,
  log: Log,
  owns: (lineageId: string) => Promise<boolean> = async () => true,
): Promise<void> {
  const report = commands?.reportMaterializationFailure?.bind(commands);
  const verify = commands?.reportVerifyOutcome?.bind(commands);
  if (!report && !verify) return;
  const pending = await db.selectFrom('edge_mirror_reports').selectAll().orderBy('source_seq').execute();
  for (const r of pending) {
    try {
      if (!(await owns(r.lineage_id))) continue;
      // The outbox holds failure reports and verify outcomes (verify.ts), told apart by `kind`.
      const parsed = JSON.parse(r.report) as MaterializationFailure | VerifyOutboxEntry;
      if ('kind' in parsed && parsed.kind === 'verify') {
        const { kind: _kind, ...info } = parsed;
        if (verify) await verify(r.lineage_id, info);
      } else if (report) {
        await report(r.lineage_id, parsed as MaterializationFailure);
      }
    } catch (err) {
      log.warn(
        { lineage_id: r.lineage_id, source_seq: r.source_seq, err: (err as Error).message },
        'failure report not sent; will retry at next start',
      );
    }
  }
}

const reportsOf = new WeakMap<Tx, Map<string, MaterializationFailure & { rows: RowChange[] }>>();
