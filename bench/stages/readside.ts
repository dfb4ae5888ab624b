/**
 * Rebuild: RowsAccepted events of one active lineage (batch-sized, zipf keys with duplicates) are
 * appended to JetStream; the mirror projection then folds them into an empty PostgreSQL read
 * store (run 1) and `rebuild('mirror')` drops and refolds them (runs 2…). Compared with the raw
 * PostgreSQL upsert of the same rows.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { uuidv7 } from 'uuidv7';
import { JetStreamEventStore } from '../../infra/nats/event-store';
import { ensureStreams } from '../../infra/nats/streams';
import { listMirrorRows, migrate, openReadStore, type Projector, startProjector } from '../../projections';
import { bindAll, TestLineage } from '../../projections/test-support/lineage';
import { type Ctx, natsTracked, type StageResult, startNatsFor } from '../lib/context';
import { changes, items, ITEMS_SCHEMA, rowsPerBatch } from '../lib/data';
import { onCleanup } from '../lib/cleanup';
import { measure, type Run, seconds } from '../lib/measure';

const PROJECT = '0190a000-0000-7000-8000-0000000000be';

/** `perEvent` rows per event: batch-sized by default; small events show the per-event cost. */
export async function rebuild(ctx: Ctx, size: number, perEvent?: number): Promise<StageResult> {
  // A nats-server of its own: the lineage stream then holds only this stage's events.
  const nats = await startNatsFor(ctx.profile);
  const forget = onCleanup(() => nats.stop());
  const nc = await connect({ servers: nats.url });
  const store = openReadStore({ kind: 'postgres', url: await ctx.createDatabase(`rebuild_${size}`) });
  let projector: Projector | undefined;
  try {
    await ensureStreams(await jetstreamManager(nc));
    const events = await JetStreamEventStore.create(nc);
    const l = new TestLineage(events, {
      project_id: PROJECT,
      device_id: uuidv7(),
      device_name: `rebuild-${size}`,
      source_table: ITEMS_SCHEMA.table_name,
    });
    const review = uuidv7();
    await l.append(
      l.registered(),
      l.observed(ITEMS_SCHEMA),
      l.queued(review, ITEMS_SCHEMA),
      l.paused('schema_review'),
    );
    await l.append(l.claimed(review));
    await l.append(l.approved(review, ITEMS_SCHEMA, bindAll(ITEMS_SCHEMA)), l.resumed('schema_review'));
    const rows = items(
      perEvent ? Math.round(ctx.sizes.rebuildRows / 20) : ctx.sizes.rebuildRows,
      size,
      ctx.sizes.keys,
    );
    const all = changes(rows);
    const keys = new Set(rows.map((r) => r.id)).size;
    const per = perEvent ?? rowsPerBatch(size);
    const epoch = uuidv7();
    const t = process.hrtime.bigint();
    for (let i = 0; i < all.length; i += per) await l.append(l.accepted(epoch, all.slice(i, i + per)));
    ctx.log(
      `  appended ${all.length} rows in ${Math.ceil(all.length / per)} events (${seconds(t).toFixed(1)} s)`,
    );
    await migrate(store);
    const check = async () => {
      const page = await listMirrorRows(store.db, {
        project_id: PROJECT,
        lineage_id: l.lineage_id,
        limit: 1,
        count: true,
      });
      if (page.total !== keys) throw new Error(`the mirror holds ${page.total} rows, not ${keys}`);
    };
    return await measure(
      ctx,
      {
        group: 'rebuild',
        stage: perEvent ? 'rebuild.small' : 'rebuild',
        label: perEvent
          ? `mirror rebuild, ${perEvent}-row events`
          : 'mirror rebuild from events → PostgreSQL',
        row_bytes: size,
        note: `${all.length} row changes in ${Math.ceil(all.length / per)} events, ${keys} keys; run 1 folds into an empty store, then rebuild('mirror')`,
      },
      async (run): Promise<Run> => {
        const t0 = process.hrtime.bigint();
        if (run === 0) {
          projector = await startProjector({ nc, store, only: ['mirror'] });
          await projector.waitForCaughtUp(undefined, { timeoutMs: 3_600_000 });
        } else {
          await projector!.rebuild('mirror');
        }
        const s = seconds(t0);
        await check();
        return { rows: all.length, seconds: s };
      },
      { extraRss: [natsTracked(nats)] },
    );
  } finally {
    await projector?.stop();
    await store.close();
    await nc.close();
    await nats.stop();
    forget();
  }
}
