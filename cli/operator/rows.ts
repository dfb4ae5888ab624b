/**
 * `sluice rows staged|mirror|write|cloud`: a lineage's staged rows and mirror rows, and write-back
 * (rows the cloud writes to a cloud_authoritative lineage, and whether the device applied them).
 */
import type { Command } from 'commander';
import type {
  CursorPage,
  LineageDetail,
  MirrorRowsPage,
  MirrorRowView,
  Page,
  StagedRowView,
} from '../../projections';
import { CliError, EXIT } from '../client';
import { type Io, json } from '../output';
import { type Column, table } from '../table';
import { ago, apiCommand, collect, positiveInt, printList, readInput, run, uuidArg } from './common';

export function registerRowCommands(program: Command, io: Io): void {
  const rows = program.command('rows').description('staged rows and mirror rows of a lineage');
  apiCommand(rows, 'staged <lineage>', 'rows waiting in staging, in commit order')
    .option('--limit <n>', 'rows per page (max 500)', positiveInt('--limit', 500))
    .option('--after <cursor>', 'continue after this cursor (the next_cursor of a previous page)')
    .option('--all', 'every staged row (pages through them, with progress on a terminal)')
    .action(
      run(io, async (ctx, [id = ''], o: { limit?: number; after?: string; all?: boolean }) => {
        const lineage = uuidArg('LINEAGE')(id);
        const cols: Column<StagedRowView>[] = [
          { header: 'COMMIT_SEQ', get: (r) => r.commit_seq, right: true },
          { header: 'OP', get: (r) => r.op },
          { header: 'KEY', get: (r) => r.pk, max: 32 },
          { header: 'ROW', get: (r) => r.row, max: 80 },
          { header: 'REASON', get: (r) => r.reason },
          { header: 'STAGED AT', get: (r) => ago(r.staged_at) },
        ];
        async function* pages(): AsyncGenerator<CursorPage<StagedRowView>> {
          let after = o.after;
          for (;;) {
            const p = await ctx.client.get<CursorPage<StagedRowView>>(`/lineages/${lineage}/staged-rows`, {
              limit: o.limit ?? (o.all ? 500 : undefined),
              after,
            });
            yield p;
            if (!p.next_cursor || p.items.length === 0) return;
            after = p.next_cursor;
          }
        }
        await printList(ctx, { all: o.all === true, what: 'staged rows' }, cols, pages(), (p) =>
          p.next_cursor
            ? `${p.items.length} of ${p.total} staged rows; next: sluice rows staged ${lineage} --after ${p.next_cursor}   (or --all)\n`
            : `${p.total} staged rows\n`,
        );
      }),
    );

  apiCommand(rows, 'mirror <lineage>', 'rows of the lineage’s mirror table, by key')
    .option('--page <n>', 'page number', positiveInt('--page'))
    .option('--after <cursor>', 'the rows after this cursor (printed under a page)')
    .option('--limit <n>', 'rows per page (max 500)', positiveInt('--limit', 500))
    .option('--all', 'every page')
    .action(
      run(io, async (ctx, [id = ''], o: { page?: number; after?: string; limit?: number; all?: boolean }) => {
        const lineage = uuidArg('LINEAGE')(id);
        // Counting scans the lineage's rows: asked once, for the first page a person reads.
        const first = await ctx.client.get<MirrorRowsPage>(`/lineages/${lineage}/mirror-rows`, {
          ...(o.after ? { after: o.after } : { page: o.all ? 1 : (o.page ?? 1) }),
          limit: o.limit ?? (o.all ? 500 : undefined),
          count: true,
        });
        if (!first.table && !ctx.json) {
          await ctx.io.out(
            `lineage ${lineage} has no mirror table yet: it is provisioned when a review is approved (sluice reviews ls --lineage ${lineage})\n`,
          );
          return;
        }
        const cols: Column<MirrorRowView>[] = [
          ...first.columns.map((c) => ({
            header: c.name,
            get: (r: MirrorRowView) => r.row[c.name],
            max: 32,
          })),
          { header: 'SOURCE_COMMIT_SEQ', get: (r) => r.source_commit_seq, right: true },
        ];
        // Later pages carry no count; the first page's is the one shown.
        const counted = (p: MirrorRowsPage) => ({ ...p, total: first.total ?? 0 });
        async function* pages(): AsyncGenerator<ReturnType<typeof counted>> {
          yield counted(first);
          if (!o.all) return;
          // By key from the cursor: every page costs the same, however deep.
          for (let after = first.next_cursor; after;) {
            const p = await ctx.client.get<MirrorRowsPage>(`/lineages/${lineage}/mirror-rows`, {
              after,
              limit: o.limit ?? 500,
            });
            if (p.items.length === 0) return;
            yield counted(p);
            after = p.next_cursor;
          }
        }
        await printList(
          ctx,
          { all: o.all === true, what: `rows in ${first.table ?? 'the mirror'}` },
          cols,
          pages(),
          (p) =>
            `${p.items.length} of ${first.total} rows in ${first.table}${
              p.next_cursor
                ? `; next: sluice rows mirror ${lineage} --after ${p.next_cursor}   (or --all)`
                : ''
            }\n`,
        );
      }),
    );

  apiCommand(
    rows,
    'write <lineage>',
    'write rows back to the device’s table (a cloud_authoritative lineage): upsert by key, sent as a signed state_write',
    true,
  )
    .option('--row <json>', 'one row, {"pk":{…},"values":{…}} (repeatable)', collect)
    .option('--rows <file>', 'a JSON array of rows ({pk, values}); - reads stdin')
    .option('--device <device>', 'device id or name that owns the lineage (default: looked up)')
    .action(
      run(io, async (ctx, [id = ''], o: { row?: string[]; rows?: string; device?: string }) => {
        const lineage = uuidArg('LINEAGE')(id);
        const parsed: unknown[] = [];
        for (const r of o.row ?? []) parsed.push(parseJsonArg('--row', r));
        if (o.rows) {
          const all = parseJsonArg('--rows', readInput('--rows', o.rows));
          if (!Array.isArray(all))
            throw new CliError(EXIT.usage, '--rows must hold a JSON array of {pk, values}');
          parsed.push(...(all as unknown[]));
        }
        if (parsed.length === 0)
          throw new CliError(
            EXIT.usage,
            'nothing to write',
            'give --row \'{"pk":{"id":1},"values":{"mode":"cool"}}\' or --rows FILE',
          );
        const device = o.device ?? (await ctx.client.get<LineageDetail>(`/lineages/${lineage}`)).device_id;
        type WriteBody = { cloud_version: number; control_id: string; rows: { pk: unknown }[] };
        const r = await ctx.client.mutate<WriteBody>(
          'POST',
          `/devices/${encodeURIComponent(device)}/edge/state-tables/${lineage}/rows`,
          { rows: parsed },
          ctx.key(),
          'project',
        );
        if (ctx.json) return ctx.io.out(json(r));
        await ctx.io.out(
          `wrote ${r.rows.length} row(s) as cloud_version ${r.cloud_version}; state_write ${r.control_id} is on its way to the device ` +
            `(sluice rows cloud ${lineage} shows when it has applied them)\n`,
        );
      }),
    );

  apiCommand(
    rows,
    'cloud <lineage>',
    'the cloud’s rows of a write-back lineage: version, and whether the device applied them',
  )
    .option('--device <device>', 'device id or name that owns the lineage (default: looked up)')
    .option('--page <n>', 'page number', positiveInt('--page'))
    .option('--limit <n>', 'rows per page (max 500)', positiveInt('--limit', 500))
    .action(
      run(io, async (ctx, [id = ''], o: { device?: string; page?: number; limit?: number }) => {
        const lineage = uuidArg('LINEAGE')(id);
        const device = o.device ?? (await ctx.client.get<LineageDetail>(`/lineages/${lineage}`)).device_id;
        type CloudRow = {
          pk: unknown;
          values: unknown;
          cloud_version: number;
          status: string;
          device_version: number | null;
          conflicts: number;
          written_at: string;
        };
        const p = await ctx.client.get<Page<CloudRow> & { authority: string; last_cloud_version: number }>(
          `/devices/${encodeURIComponent(device)}/edge/state-tables/${lineage}/rows`,
          { page: o.page, limit: o.limit },
          'project',
        );
        if (ctx.json) return ctx.io.out(json(p));
        const cols: Column<CloudRow>[] = [
          { header: 'KEY', get: (r) => r.pk, max: 32 },
          { header: 'VALUES', get: (r) => r.values, max: 60 },
          { header: 'VERSION', get: (r) => r.cloud_version, right: true },
          { header: 'STATUS', get: (r) => r.status },
          { header: 'DEVICE_VERSION', get: (r) => r.device_version ?? '-', right: true },
          { header: 'CONFLICTS', get: (r) => r.conflicts, right: true },
          { header: 'WRITTEN', get: (r) => ago(r.written_at) },
        ];
        await ctx.io.out(`lineage ${lineage}: ${p.authority}, last cloud_version ${p.last_cloud_version}\n`);
        await ctx.io.out(table(p.items, cols));
        await ctx.io.out(`${p.items.length} of ${p.total} cloud rows\n`);
      }),
    );
}

function parseJsonArg(what: string, text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new CliError(EXIT.usage, `${what} is not JSON: ${(err as Error).message}`);
  }
}
