/**
 * `telemetry`: approved telemetry lineages as append-only tables: `edge_ts_{device8}_{table}` per
 * device, or the coalesced `edge_ts_p…` / `edge_ts_f…` of a registry entry's scope (shapes in
 * tables.ts), and the data points approvals created (`edge_data_points`, docs/telemetry.md).
 */
import type {
  ColumnBinding,
  DataPoint,
  LineageEvent,
  StoredEvent,
  TelemetryRow,
} from '../../domain/lineage/events';
import { assertNever } from '../../domain/shared/decider';
import type { ApplyContext, CommandSender, Log, Projection, Tx } from '../runner/types';
import { silentLog } from '../runner/types';
import { errorCode } from '../store/dialect';
import { quoteIdent, telemetryTableName } from '../store/identifiers';
import {
  markReplayCompleted,
  recordReplay,
  resendPendingReplays,
  sendCompleteReplay,
} from '../store/replays';
import type { EdgeTsLineagesTable } from '../store/schema';
import type { DbValue } from '../store/values';
import type { MirrorColumn } from '../mirror/columns';
import { dropTable, withSavepoint } from '../mirror/ddl';
import { isCoalescedTable, provisionCoalesced } from './coalesced';
import { SYSTEM, addTelemetryColumns, createTelemetryTable, planColumns } from './tables';

const HANDLES = [
  'LineageRegistered',
  'SchemaReviewApproved',
  'SchemaApprovedByRegistry',
  'DataPointsCreated',
  'TelemetryStaged',
  'TelemetryAccepted',
  'StagedRowsReleased',
  'ReplayCompleted',
  'MaterializationReset',
  'LineageDeleted',
] as const satisfies readonly LineageEvent['type'][];
type Handled = StoredEvent<Extract<LineageEvent, { type: (typeof HANDLES)[number] }>>;

export type TelemetryDeps = Readonly<{ commands?: CommandSender; log?: Log }>;

const MAX_ROWS_PER_INSERT = 500;
const HELD_CHUNK = 4_096;

type Positioned = Readonly<{ batch_seq: number; batch_row: number; row: TelemetryRow }>;

/** Like mirror tables: a name another lineage already holds gets this lineage's id hashed in. */
async function uniqueName(tx: Tx, l: EdgeTsLineagesTable): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    const name = telemetryTableName(
      l.device_id,
      l.source_table,
      attempt === 0 ? '' : `${l.lineage_id}:${attempt}`,
    );
    const taken = await tx
      .selectFrom('edge_ts_lineages')
      .select('lineage_id')
      .where('table_name', '=', name)
      .executeTakeFirst();
    if (!taken) return name;
  }
}

async function recordDataPoints(tx: Tx, l: EdgeTsLineagesTable, points: readonly DataPoint[], at: string) {
  for (const p of points) {
    await tx
      .insertInto('edge_data_points')
      .values({
        lineage_id: l.lineage_id,
        name: p.name,
        project_id: l.project_id,
        device_id: l.device_id,
        device_name: l.device_name,
        source_table: l.source_table,
        source_column: p.column,
        affinity: p.affinity,
        action: p.action,
        created_at: at,
      })
      .onConflict((oc) => oc.columns(['lineage_id', 'name']).doNothing())
      .execute();
  }
}

export function telemetryProjection(deps: TelemetryDeps = {}): Projection<Handled> {
  const log = deps.log ?? silentLog;

  async function recordFailure(
    tx: Tx,
    ctx: ApplyContext,
    l: EdgeTsLineagesTable,
    rows: number,
    err: unknown,
  ) {
    const code = errorCode(err) ?? 'error';
    const message = (err instanceof Error ? err.message : String(err)).slice(0, 2000);
    await tx
      .updateTable('edge_ts_lineages')
      .set((eb) => ({
        materialization_errors: eb('materialization_errors', '+', 1),
        failed_rows: eb('failed_rows', '+', rows),
        last_error: `${code}: ${message}`,
        last_error_at: ctx.occurred_at,
      }))
      .where('lineage_id', '=', l.lineage_id)
      .execute();
    if (!ctx.rebuilding) {
      log.warn(
        { lineage_id: l.lineage_id, seq: ctx.seq, code, rows, err: message },
        'telemetry rows not materialized; recorded on the lineage',
      );
    }
    const report = deps.commands?.reportMaterializationFailure?.bind(deps.commands);
    if (report) {
      // Telemetry rows are not RowChanges: the report counts for the circuit breaker only.
      const info = {
        source_seq: ctx.seq,
        event_type: 'telemetry',
        code,
        message,
        permanent: true,
        rows: [],
        journal_epoch: null,
      };
      ctx.afterCommit(() => report(l.lineage_id, info));
    }
  }

  async function provision(
    tx: Tx,
    ctx: ApplyContext,
    l: EdgeTsLineagesTable,
    bindings: readonly ColumnBinding[],
    hash: string,
  ) {
    // A review of its own after a registry approval: the lineage gets a device telemetry table (again).
    const own = (await isCoalescedTable(tx, l.table_name)) ? { ...l, table_name: null, columns: '[]' } : l;
    const existing = JSON.parse(own.columns) as MirrorColumn[];
    const plan = planColumns(bindings, existing);
    try {
      await withSavepoint(tx, ctx.dialect, 'sluice_ts_ddl', async () => {
        const table = own.table_name ?? (await uniqueName(tx, own));
        if (own.table_name === null) await createTelemetryTable(tx, ctx.dialect, table, plan.columns, false);
        else await addTelemetryColumns(tx, ctx.dialect, table, plan.added);
        await tx
          .updateTable('edge_ts_lineages')
          .set({ table_name: table, schema_hash: hash, columns: JSON.stringify(plan.columns) })
          .where('lineage_id', '=', l.lineage_id)
          .execute();
      });
    } catch (err) {
      if (ctx.dialect.classifyError(err) === 'transient') throw err;
      await recordFailure(tx, ctx, l, 0, err);
    }
  }

  async function write(tx: Tx, ctx: ApplyContext, l: EdgeTsLineagesTable, rows: readonly Positioned[]) {
    if (rows.length === 0) return;
    if (l.table_name === null) {
      await recordFailure(
        tx,
        ctx,
        l,
        rows.length,
        new Error('no telemetry table is provisioned (no approval yet)'),
      );
      return;
    }
    const cols = (JSON.parse(l.columns) as MirrorColumn[]).filter((c) => c.bound);
    const names = [...SYSTEM, ...cols.map((c) => c.name)].map(quoteIdent);
    const params: DbValue[][] = [];
    let bad = 0;
    let firstBad: unknown;
    for (const { batch_seq, batch_row, row } of rows) {
      try {
        params.push([
          l.device_id,
          row.ts,
          Date.parse(row.ts),
          row.row_id ?? null,
          batch_seq,
          batch_row,
          ...cols.map((c) => ctx.dialect.bindValue(c.affinity, row.fields[c.source] ?? null)),
        ]);
      } catch (err) {
        bad++;
        firstBad ??= err;
      }
    }
    const perInsert = Math.max(
      1,
      Math.min(MAX_ROWS_PER_INSERT, Math.floor(ctx.dialect.maxParams / names.length)),
    );
    try {
      await withSavepoint(tx, ctx.dialect, 'sluice_ts_write', async () => {
        for (let i = 0; i < params.length; i += perInsert) {
          const chunk = params.slice(i, i + perInsert);
          let p = 0;
          const tuples = chunk.map(() => `(${names.map(() => ctx.dialect.placeholder(++p)).join(', ')})`);
          await ctx.dialect.exec(
            tx,
            // Either key (device telemetry table or coalesced) holds the batch position: a repeat is a no-op.
            `INSERT INTO ${quoteIdent(l.table_name!)} (${names.join(', ')}) VALUES ${tuples.join(', ')} ` +
              'ON CONFLICT DO NOTHING',
            chunk.flat(),
          );
        }
      });
    } catch (err) {
      if (ctx.dialect.classifyError(err) === 'transient') throw err;
      bad += params.length;
      firstBad ??= err;
    }
    if (bad > 0) await recordFailure(tx, ctx, l, bad, firstBad);
  }

  async function hold(tx: Tx, l: EdgeTsLineagesTable, batchSeq: number, rows: readonly TelemetryRow[]) {
    for (let i = 0; i < rows.length; i += 1_000) {
      await tx
        .insertInto('edge_ts_held_rows')
        .values(
          rows.slice(i, i + 1_000).map((r, j) => ({
            lineage_id: l.lineage_id,
            batch_seq: batchSeq,
            batch_row: i + j,
            ts: r.ts,
            row_id: r.row_id ?? null,
            fields: JSON.stringify(r.fields),
          })),
        )
        .onConflict((oc) => oc.columns(['lineage_id', 'batch_seq', 'batch_row']).doNothing())
        .execute();
    }
  }

  async function release(tx: Tx, ctx: ApplyContext, l: EdgeTsLineagesTable, replayId: string) {
    let rows = 0;
    let after: { batch_seq: number; batch_row: number } | null = null;
    for (;;) {
      const cursor: { batch_seq: number; batch_row: number } | null = after;
      const held = await tx
        .selectFrom('edge_ts_held_rows')
        .select(['batch_seq', 'batch_row', 'ts', 'row_id', 'fields'])
        .where('lineage_id', '=', l.lineage_id)
        .$if(cursor !== null, (q) =>
          q.where((eb) =>
            eb.or([
              eb('batch_seq', '>', cursor!.batch_seq),
              eb.and([eb('batch_seq', '=', cursor!.batch_seq), eb('batch_row', '>', cursor!.batch_row)]),
            ]),
          ),
        )
        .orderBy('batch_seq')
        .orderBy('batch_row')
        .limit(HELD_CHUNK)
        .execute();
      if (held.length === 0) break;
      rows += held.length;
      after = held[held.length - 1]!;
      await write(
        tx,
        ctx,
        l,
        held.map((h) => ({
          batch_seq: h.batch_seq,
          batch_row: h.batch_row,
          row: {
            ts: h.ts,
            ...(h.row_id === null ? {} : { row_id: h.row_id }),
            fields: JSON.parse(h.fields) as TelemetryRow['fields'],
          },
        })),
      );
    }
    await tx.deleteFrom('edge_ts_held_rows').where('lineage_id', '=', l.lineage_id).execute();
    await recordReplay(tx, 'edge_ts_replays', {
      replay_id: replayId,
      lineage_id: l.lineage_id,
      stream_seq: ctx.seq,
      rows,
      released_at: ctx.occurred_at,
    });
    const commands = deps.commands;
    if (commands) ctx.afterCommit(() => sendCompleteReplay(commands, l.lineage_id, replayId, rows));
  }

  async function apply(tx: Tx, event: Handled, ctx: ApplyContext): Promise<void> {
    if (event.type === 'LineageRegistered') {
      const d = event.data;
      if (d.kind !== 'telemetry') return;
      await tx
        .insertInto('edge_ts_lineages')
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
          table_name: null,
          schema_hash: null,
          columns: '[]',
        })
        .onConflict((oc) => oc.column('lineage_id').doNothing())
        .execute();
      return;
    }
    const l = await tx
      .selectFrom('edge_ts_lineages')
      .selectAll()
      .where('lineage_id', '=', ctx.lineage_id)
      .executeTakeFirst();
    if (!l) return;
    switch (event.type) {
      case 'SchemaReviewApproved':
        await provision(tx, ctx, l, event.data.bindings, event.data.schema_hash);
        return;
      case 'SchemaApprovedByRegistry':
        try {
          await withSavepoint(tx, ctx.dialect, 'sluice_ts_ddl', () =>
            provisionCoalesced(tx, ctx, l, event.data),
          );
        } catch (err) {
          if (ctx.dialect.classifyError(err) === 'transient') throw err;
          await recordFailure(tx, ctx, l, 0, err);
        }
        return;
      case 'DataPointsCreated':
        await recordDataPoints(tx, l, event.data.data_points, ctx.occurred_at);
        return;
      case 'TelemetryStaged':
        await hold(tx, l, event.data.batch_seq, event.data.rows);
        return;
      case 'TelemetryAccepted': {
        const seq = event.data.batch_seq;
        await write(
          tx,
          ctx,
          l,
          event.data.rows.map((row, batch_row) => ({ batch_seq: seq, batch_row, row })),
        );
        return;
      }
      case 'StagedRowsReleased':
        await release(tx, ctx, l, event.data.replay_id);
        return;
      case 'ReplayCompleted':
        await markReplayCompleted(tx, 'edge_ts_replays', event.data.replay_id, ctx.occurred_at);
        return;
      case 'MaterializationReset':
        await tx
          .updateTable('edge_ts_lineages')
          .set({ materialization_errors: 0 })
          .where('lineage_id', '=', l.lineage_id)
          .execute();
        return;
      case 'LineageDeleted':
        if (await isCoalescedTable(tx, l.table_name)) {
          await ctx.dialect.exec(
            tx,
            `DELETE FROM ${quoteIdent(l.table_name!)} WHERE "device_id" = ${ctx.dialect.placeholder(1)}`,
            [l.device_id],
          );
        } else if (l.table_name) await dropTable(tx, ctx.dialect, l.table_name);
        for (const t of [
          'edge_ts_held_rows',
          'edge_ts_replays',
          'edge_data_points',
          'edge_ts_lineages',
        ] as const) {
          await tx.deleteFrom(t).where('lineage_id', '=', l.lineage_id).execute();
        }
        return;
      default:
        return assertNever(event, 'telemetry event');
    }
  }

  return {
    name: 'telemetry',
    // Not partitioned: a table name another device's lineage holds gets a salt, so names depend on
    // the order of every device's events, which only one global fold keeps (docs/scale-out.md).
    // 2: values keep their storage class (the mirror's codec; PostgreSQL jsonb for BLOB and
    // NUMERIC affinity). 3: `event_ms` and its index, coalesced tables, data points. Existing
    // tables are rebuilt.
    version: 3,
    stream: 'SLUICE_LINEAGE',
    handles: HANDLES,
    apply,
    async truncate(tx, dialect) {
      const tables = await tx
        .selectFrom('edge_ts_lineages')
        .select('table_name')
        .where('table_name', 'is not', null)
        .execute();
      const coalesced = await tx.selectFrom('edge_ts_coalesced_tables').select('table_name').execute();
      for (const name of new Set([...tables, ...coalesced].map((t) => t.table_name!))) {
        await dropTable(tx, dialect, name);
      }
      for (const t of [
        'edge_ts_held_rows',
        'edge_ts_replays',
        'edge_data_points',
        'edge_ts_coalesced_tables',
        'edge_ts_lineages',
      ] as const) {
        await tx.deleteFrom(t).execute();
      }
    },
    onCaughtUp: (db, { sentUpTo, owns }) =>
      resendPendingReplays(db, 'edge_ts_replays', sentUpTo, deps.commands, log, owns),
  };
}
