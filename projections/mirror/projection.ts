/**
 * `mirror`: materializes approved row lineages into `edge_mirror_{device8}_{table}` (SPEC §6).
 * Approval provisions the table; accepted rows are written at once; staged rows are held in the
 * mirror's own table and written, in commit order, when the domain releases them. The mirror
 * never reads another projection's tables, so it can be rebuilt alone.
 */
import type { LineageEvent, StoredEvent } from '../../domain/lineage/events';
import type { RowChange } from '../../domain/protocol/contracts';
import { pkHash } from '../../domain/shared/canonical';
import { assertNever } from '../../domain/shared/decider';
import type { ApplyContext, BatchItem, CommandSender, Log, Projection, Tx } from '../runner/types';
import { silentLog } from '../runner/types';
import {
  markReplayCompleted,
  recordReplay,
  resendPendingReplays,
  sendCompleteReplay,
} from '../store/replays';
import type { EdgeMirrorTablesTable, MaterializedLineageTable } from '../store/schema';
import { MaterializationError } from '../store/values';
import { planTable } from './columns';
import {
  coalescedTarget,
  forgetCoalesced,
  joinCoalesced,
  leaveCoalesced,
  truncateCoalesced,
} from './coalesced';
import { addMirrorColumns, createMirrorTable, dropTable, withSavepoint } from './ddl';
import {
  columnsOf,
  currentTable,
  epochOrdinal,
  FailureTally,
  mirrorLineage,
  recordFailure,
  reportTaken,
  resendPendingReports,
  targetOf,
  uniqueTableName,
} from './registry';
import { verifyCompleted, verifyReported } from './verify';
import { materialize, type MirrorOp, type SweepSpec } from './write';

const HANDLES = [
  'LineageRegistered',
  'SchemaReviewApproved',
  'SchemaApprovedByRegistry',
  'RowsStaged',
  'RowsAccepted',
  'StagedRowsReleased',
  'ReplayCompleted',
  'MaterializationFailed',
  'MaterializationReset',
  'LineageDeleted',
  'VerifyReported',
  'VerifyCompleted',
] as const satisfies readonly LineageEvent['type'][];
type Handled = StoredEvent<Extract<LineageEvent, { type: (typeof HANDLES)[number] }>>;
type Approved = Extract<LineageEvent, { type: 'SchemaReviewApproved' }>['data'];
type RegistryApproved = Extract<LineageEvent, { type: 'SchemaApprovedByRegistry' }>['data'];

export type MirrorDeps = Readonly<{ commands?: CommandSender; log?: Log }>;

/** Held rows are replayed in chunks of one wire batch. */
const REPLAY_CHUNK = 4_096;
const HOLD_CHUNK = 1_000;

/** A change the mirror materializes: refused changes never are (the decider records them apart). */
type Materializable = RowChange & { op: MirrorOp['op'] };
const materializable = (rows: readonly RowChange[]): Materializable[] =>
  rows.filter((r): r is Materializable => r.op !== 'refused');

const toOp = (journal_epoch: string, epoch_ordinal: number, r: Materializable): MirrorOp => ({
  journal_epoch,
  epoch_ordinal,
  commit_seq: r.commit_seq,
  op: r.op,
  pk: r.pk,
  row: r.row,
  pk_hash: pkHash(r.pk),
  ...(r.sweep ? { sweep: r.sweep } : {}),
});

/**
 * What the RowsAccepted path looks up for every event (the lineage's mirror row, its current
 * table, the ordinal of the journal epoch), kept for the rest of one transaction: a projector
 * batch applies many events in one. Only RowsAccepted reads and fills it; any other event, and a
 * recorded failure, drop it, so it always holds what a fresh read in the transaction would return.
 */
type Lookups = {
  lineages: Map<string, MaterializedLineageTable>;
  tables: Map<string, EdgeMirrorTablesTable>;
  epochs: Map<string, number>;
};
const lookupsOf = new WeakMap<Tx, Lookups>();
function lookups(tx: Tx): Lookups {
  let l = lookupsOf.get(tx);
  if (!l) {
    l = { lineages: new Map(), tables: new Map(), epochs: new Map() };
    lookupsOf.set(tx, l);
  }
  return l;
}

/** Thrown inside the row-set savepoint to undo it: the events are then applied one by one. */
const ONE_BY_ONE = Symbol('one by one');

const noTable = (l: MaterializedLineageTable) =>
  new MaterializationError(
    'no_mirror_table',
    `no mirror table is provisioned for lineage ${l.lineage_id} (no approval with a mirrored key yet)`,
  );

export function mirrorProjection(deps: MirrorDeps = {}): Projection<Handled> {
  const log = deps.log ?? silentLog;
  const fail = { commands: deps.commands, log };

  async function provision(
    tx: Tx,
    ctx: ApplyContext,
    l: MaterializedLineageTable,
    d: Approved,
  ): Promise<void> {
    await leaveCoalesced(tx, l.lineage_id);
    const current = await currentTable(tx, l.lineage_id);
    const plan = planTable(d.bindings, current ? columnsOf(current) : null);
    if (plan.kind === 'no_key') {
      // The domain keeps such a lineage paused (deferred_columns): no rows will come until a
      // later approval mirrors the key.
      log.info({ lineage_id: l.lineage_id, why: plan.why }, 'mirror table not provisioned');
      return;
    }
    const tally = new FailureTally();
    try {
      await withSavepoint(tx, ctx.dialect, 'sluice_mirror_ddl', async () => {
        if (plan.kind === 'alter' && current) {
          await addMirrorColumns(tx, ctx.dialect, current.table_name, plan.added);
          await tx
            .updateTable('edge_mirror_tables')
            .set({
              columns: JSON.stringify(plan.columns),
              schema_hash: d.schema_hash,
              updated_at: ctx.occurred_at,
            })
            .where('table_name', '=', current.table_name)
            .execute();
          return;
        }
        const last = await tx
          .selectFrom('edge_mirror_tables')
          .select((eb) => eb.fn.max('generation').as('g'))
          .where('lineage_id', '=', l.lineage_id)
          .executeTakeFirst();
        const generation = Number(last?.g ?? 0) + 1;
        const name = await uniqueTableName(tx, l, generation);
        await createMirrorTable(tx, ctx.dialect, name, plan.columns);
        if (current) {
          // A new key or column type: the old table stays readable, retired, and a new generation
          // starts empty (old rows cannot be re-keyed). Tombstones belong to the old key.
          log.warn(
            {
              lineage_id: l.lineage_id,
              old: current.table_name,
              new: name,
              why: plan.kind === 'recreate' ? plan.why : '',
            },
            'mirror table replaced by a new generation',
          );
          await tx
            .updateTable('edge_mirror_tables')
            .set({ status: 'retired', updated_at: ctx.occurred_at })
            .where('table_name', '=', current.table_name)
            .execute();
          await tx.deleteFrom('edge_mirror_tombstones').where('lineage_id', '=', l.lineage_id).execute();
        }
        await tx
          .insertInto('edge_mirror_tables')
          .values({
            table_name: name,
            lineage_id: l.lineage_id,
            project_id: l.project_id,
            device_id: l.device_id,
            source_table: l.source_table,
            generation,
            status: 'current',
            schema_hash: d.schema_hash,
            columns: JSON.stringify(plan.columns),
            created_at: ctx.occurred_at,
            updated_at: ctx.occurred_at,
          })
          .execute();
      });
    } catch (err) {
      if (ctx.dialect.classifyError(err) === 'transient') throw err;
      tally.fail(err);
    }
    await recordFailure(tx, ctx, l, 'SchemaReviewApproved', tally, fail);
  }

  async function hold(tx: Tx, l: MaterializedLineageTable, epoch: string, rows: readonly RowChange[]) {
    const ordinal = await epochOrdinal(tx, l.lineage_id, epoch);
    const values = materializable(rows).map((r) => ({
      lineage_id: l.lineage_id,
      journal_epoch: epoch,
      epoch_ordinal: ordinal,
      commit_seq: r.commit_seq,
      op: r.op,
      pk: JSON.stringify(r.pk),
      pk_hash: pkHash(r.pk),
      row: r.row === null ? null : JSON.stringify(r.row),
      sweep: r.sweep ? JSON.stringify(r.sweep) : null,
    }));
    for (let i = 0; i < values.length; i += HOLD_CHUNK) {
      await tx
        .insertInto('edge_mirror_held_rows')
        .values(values.slice(i, i + HOLD_CHUNK))
        .onConflict((oc) =>
          oc.columns(['lineage_id', 'epoch_ordinal', 'commit_seq', 'journal_epoch']).doNothing(),
        )
        .execute();
    }
  }

  async function writeRows(
    tx: Tx,
    ctx: ApplyContext,
    l: MaterializedLineageTable,
    ops: MirrorOp[],
    tally: FailureTally,
    cache?: Lookups,
  ) {
    const coalesced = await coalescedTarget(tx, l);
    const table = coalesced
      ? undefined
      : (cache?.tables.get(l.lineage_id) ?? (await currentTable(tx, l.lineage_id)));
    if (table && cache) cache.tables.set(l.lineage_id, table);
    if (!coalesced && !table) {
      const err = noTable(l);
      for (const op of ops) tally.note(err, op);
      return;
    }
    const result = await materialize(tx, ctx.dialect, coalesced ?? targetOf(table!), ops);
    tally.add(result.failures);
  }

  /** Every held row of the lineage, in (epoch ordinal, commit_seq) order, then out of the hold. */
  async function release(tx: Tx, ctx: ApplyContext, l: MaterializedLineageTable, replayId: string) {
    const tally = new FailureTally();
    let rows = 0;
    let after: { epoch_ordinal: number; commit_seq: number } | null = null;
    for (;;) {
      const cursor: { epoch_ordinal: number; commit_seq: number } | null = after;
      const held = await tx
        .selectFrom('edge_mirror_held_rows')
        .select(['journal_epoch', 'epoch_ordinal', 'commit_seq', 'op', 'pk', 'pk_hash', 'row', 'sweep'])
        .where('lineage_id', '=', l.lineage_id)
        .$if(cursor !== null, (q) =>
          q.where((eb) =>
            eb.or([
              eb('epoch_ordinal', '>', cursor!.epoch_ordinal),
              eb.and([
                eb('epoch_ordinal', '=', cursor!.epoch_ordinal),
                eb('commit_seq', '>', cursor!.commit_seq),
              ]),
            ]),
          ),
        )
        .orderBy('epoch_ordinal')
        .orderBy('commit_seq')
        .limit(REPLAY_CHUNK)
        .execute();
      if (held.length === 0) break;
      rows += held.length;
      after = held[held.length - 1]!;
      const ops: MirrorOp[] = held.map((h) => ({
        journal_epoch: h.journal_epoch,
        epoch_ordinal: h.epoch_ordinal,
        commit_seq: h.commit_seq,
        op: h.op,
        pk: JSON.parse(h.pk) as MirrorOp['pk'],
        row: h.row === null ? null : (JSON.parse(h.row) as MirrorOp['row']),
        pk_hash: h.pk_hash,
        ...(h.sweep === null ? {} : { sweep: JSON.parse(h.sweep) as SweepSpec }),
      }));
      await writeRows(tx, ctx, l, ops, tally);
    }
    await tx.deleteFrom('edge_mirror_held_rows').where('lineage_id', '=', l.lineage_id).execute();
    await recordReplay(tx, 'edge_mirror_replays', {
      replay_id: replayId,
      lineage_id: l.lineage_id,
      stream_seq: ctx.seq,
      rows,
      released_at: ctx.occurred_at,
    });
    await recordFailure(tx, ctx, l, 'StagedRowsReleased', tally, fail);
    const commands = deps.commands;
    if (commands) ctx.afterCommit(() => sendCompleteReplay(commands, l.lineage_id, replayId, rows));
  }

  async function coalesce(tx: Tx, ctx: ApplyContext, l: MaterializedLineageTable, d: RegistryApproved) {
    const tally = new FailureTally();
    try {
      await joinCoalesced(tx, ctx, l, d, log);
    } catch (err) {
      if (ctx.dialect.classifyError(err) === 'transient') throw err;
      tally.fail(err);
    }
    await recordFailure(tx, ctx, l, 'SchemaApprovedByRegistry', tally, fail);
  }

  async function forget(tx: Tx, ctx: ApplyContext, lineageId: string) {
    const tables = await tx
      .selectFrom('edge_mirror_tables')
      .select('table_name')
      .where('lineage_id', '=', lineageId)
      .execute();
    for (const t of tables) await dropTable(tx, ctx.dialect, t.table_name);
    for (const t of [
      'edge_mirror_tables',
      'edge_mirror_held_rows',
      'edge_mirror_tombstones',
      'edge_mirror_epochs',
      'edge_mirror_failures',
      'edge_mirror_replays',
      'edge_mirror_reports',
      'edge_verify_runs',
      'edge_mirror_lineages',
    ] as const) {
      await tx.deleteFrom(t).where('lineage_id', '=', lineageId).execute();
    }
  }

  async function apply(tx: Tx, event: Handled, ctx: ApplyContext): Promise<void> {
    if (event.type === 'LineageRegistered') {
      const d = event.data;
      if (d.kind !== 'rows') return; // telemetry lineages belong to the telemetry projection
      await tx
        .insertInto('edge_mirror_lineages')
        .values({
          lineage_id: d.lineage_id,
          project_id: d.project_id,
          device_id: d.device_id,
          device_name: d.device_name,
          source_table: d.source_table,
          kind: d.kind,
          materialization_errors: 0,
          failed_rows: 0,
          last_error: null,
          last_error_at: null,
        })
        .onConflict((oc) => oc.column('lineage_id').doNothing())
        .execute();
      return;
    }
    if (event.type !== 'RowsAccepted') lookupsOf.delete(tx);
    const cache = event.type === 'RowsAccepted' ? lookups(tx) : undefined;
    const l = cache?.lineages.get(ctx.lineage_id) ?? (await mirrorLineage(tx, ctx.lineage_id));
    if (!l) return;
    cache?.lineages.set(ctx.lineage_id, l);
    switch (event.type) {
      case 'SchemaReviewApproved':
        await provision(tx, ctx, l, event.data);
        return;
      case 'SchemaApprovedByRegistry':
        await coalesce(tx, ctx, l, event.data);
        return;
      case 'RowsStaged':
        await hold(tx, l, event.data.journal_epoch, event.data.rows);
        return;
      case 'RowsAccepted': {
        const tally = new FailureTally();
        const epoch = event.data.journal_epoch;
        const epochKey = `${l.lineage_id}\u0000${epoch}`;
        const ordinal = cache!.epochs.get(epochKey) ?? (await epochOrdinal(tx, l.lineage_id, epoch));
        cache!.epochs.set(epochKey, ordinal);
        await writeRows(
          tx,
          ctx,
          l,
          materializable(event.data.rows).map((r) => toOp(epoch, ordinal, r)),
          tally,
          cache,
        );
        await recordFailure(tx, ctx, l, 'RowsAccepted', tally, fail);
        // A failure updates the lineage's mirror row (its counters): read it afresh next time.
        if (tally.first !== undefined) lookupsOf.delete(tx);
        return;
      }
      case 'MaterializationFailed':
        // The domain staged the rows we reported: hold them so that the next release replays them.
        if (event.data.journal_epoch !== null && event.data.rows.length > 0) {
          await hold(tx, l, event.data.journal_epoch, event.data.rows);
        }
        await reportTaken(tx, l.lineage_id, event.data.source_seq, event.data.journal_epoch);
        return;
      case 'MaterializationReset':
        await tx
          .updateTable('edge_mirror_lineages')
          .set({ materialization_errors: 0 })
          .where('lineage_id', '=', l.lineage_id)
          .execute();
        return;
      case 'StagedRowsReleased':
        await release(tx, ctx, l, event.data.replay_id);
        return;
      case 'ReplayCompleted':
        await markReplayCompleted(tx, 'edge_mirror_replays', event.data.replay_id, ctx.occurred_at);
        return;
      case 'LineageDeleted':
        await forgetCoalesced(tx, ctx, l);
        await forget(tx, ctx, l.lineage_id);
        return;
      case 'VerifyReported':
        await verifyReported(tx, ctx, l, event.data, deps.commands);
        return;
      case 'VerifyCompleted':
        await verifyCompleted(tx, ctx, l.lineage_id, event.data);
        return;
      default:
        return assertNever(event, 'mirror event');
    }
  }

  /**
   * Consecutive RowsAccepted of a transaction, written as one set per lineage: the changes of all
   * its events in stream order, so `materialize` keeps the latest per key (a position only moves
   * forward within a lineage) and runs sweeps in their place. The result is what applying the
   * events one by one leaves. Failures are rare and recorded per event (per message reports):
   * when any row fails, the set is undone and the events are applied one by one instead.
   */
  async function applyAccepted(tx: Tx, items: readonly BatchItem<Handled>[]): Promise<void> {
    if (items.length === 0) return;
    if (items.length === 1) return apply(tx, items[0]!.event, items[0]!.ctx);
    const dialect = items[0]!.ctx.dialect;
    const written = await withSavepoint(tx, dialect, 'sluice_mirror_rows', async () => {
      if (!(await writeAccepted(tx, items))) throw ONE_BY_ONE;
      return true;
    }).catch((err: unknown) => {
      if (err === ONE_BY_ONE) return false;
      throw err;
    });
    if (written) return;
    // What the rolled-back set read or assigned (epoch ordinals) must be read again.
    lookupsOf.delete(tx);
    for (const { event, ctx } of items) await apply(tx, event, ctx);
  }

  /** False as soon as a lineage's set has a failure (the caller undoes it all). */
  async function writeAccepted(tx: Tx, items: readonly BatchItem<Handled>[]): Promise<boolean> {
    const cache = lookups(tx);
    const sets = new Map<string, { l: MaterializedLineageTable; ctx: ApplyContext; ops: MirrorOp[] }>();
    for (const { event, ctx } of items) {
      if (event.type !== 'RowsAccepted') throw new Error(`not a row event: ${event.type}`);
      const l = cache.lineages.get(ctx.lineage_id) ?? (await mirrorLineage(tx, ctx.lineage_id));
      if (!l) continue;
      cache.lineages.set(ctx.lineage_id, l);
      const epoch = event.data.journal_epoch;
      const epochKey = `${l.lineage_id}\u0000${epoch}`;
      const ordinal = cache.epochs.get(epochKey) ?? (await epochOrdinal(tx, l.lineage_id, epoch));
      cache.epochs.set(epochKey, ordinal);
      let set = sets.get(l.lineage_id);
      if (!set) sets.set(l.lineage_id, (set = { l, ctx, ops: [] }));
      for (const r of materializable(event.data.rows)) set.ops.push(toOp(epoch, ordinal, r));
    }
    for (const { l, ctx, ops } of sets.values()) {
      const tally = new FailureTally();
      await writeRows(tx, ctx, l, ops, tally, cache);
      if (tally.first !== undefined) return false;
    }
    return true;
  }

  async function applyBatch(tx: Tx, items: readonly BatchItem<Handled>[]): Promise<void> {
    let start = 0;
    for (let i = 0; i < items.length; i++) {
      if (items[i]!.event.type === 'RowsAccepted') continue;
      // Anything else (approvals, releases, deletions) sees every row event before it written.
      await applyAccepted(tx, items.slice(start, i));
      await apply(tx, items[i]!.event, items[i]!.ctx);
      start = i + 1;
    }
    await applyAccepted(tx, items.slice(start));
  }

  return {
    name: 'mirror',
    // Not partitioned: a table name another device's lineage holds gets a salt, so names depend on
    // the order of every device's events, which only one global fold keeps (docs/scale-out.md).
    // 2: values keep their storage class (bigint/REAL apart, -0, ±Infinity; PostgreSQL jsonb for
    // BLOB and NUMERIC affinity), sweeps, verify runs.
    version: 2,
    stream: 'SLUICE_LINEAGE',
    handles: HANDLES,
    apply,
    applyBatch,
    async truncate(tx, dialect) {
      await truncateCoalesced(tx, dialect);
      const tables = await tx.selectFrom('edge_mirror_tables').select('table_name').execute();
      for (const t of tables) await dropTable(tx, dialect, t.table_name);
      for (const t of [
        'edge_mirror_tables',
        'edge_mirror_held_rows',
        'edge_mirror_tombstones',
        'edge_mirror_epochs',
        'edge_mirror_failures',
        'edge_mirror_replays',
        'edge_mirror_reports',
        'edge_verify_runs',
        'edge_mirror_lineages',
      ] as const) {
        await tx.deleteFrom(t).execute();
      }
    },
    onCaughtUp: async (db, { sentUpTo, owns }) => {
      await resendPendingReplays(db, 'edge_mirror_replays', sentUpTo, deps.commands, log, owns);
      await resendPendingReports(db, deps.commands, log, owns);
    },
  };
}
