/**
 * `sluice lineages ls|show|reset|authority|verify|resync|delete`: lineages (one per device table),
 * their page and the commands on them. `verify` has its own module (verify.ts).
 */
import { type Command, Option } from 'commander';
import type { LineageDetail, LineageSummary, Page } from '../../projections';
import { CliError, EXIT } from '../client';
import { type Io, json } from '../output';
import { type Column, fields, table } from '../table';
import { type CommandBody, ago, allPages, apiCommand, positiveInt, printList, run, uuidArg } from './common';
import { reviewCols } from './review-render';
import { registerLineageVerify } from './verify';

const lineageCols: Column<LineageSummary>[] = [
  { header: 'LINEAGE', get: (l) => l.lineage_id, max: 36 },
  { header: 'DEVICE', get: (l) => l.device_name, max: 24 },
  { header: 'TABLE', get: (l) => l.source_table, max: 24 },
  { header: 'STATUS', get: (l) => l.status },
  { header: 'PAUSED FOR', get: (l) => l.pause_reasons, max: 40 },
  { header: 'STAGED', get: (l) => l.staged_rows, right: true },
  { header: 'MATERIALIZED', get: (l) => l.materialized_rows, right: true },
  { header: 'LAST BATCH', get: (l) => ago(l.last_batch_at) },
  { header: 'UPDATED', get: (l) => ago(l.updated_at) },
];

export function registerLineageCommands(program: Command, io: Io): void {
  const lineages = program
    .command('lineages')
    .description('list, inspect, verify, resync, reset and delete lineages');
  apiCommand(lineages, 'ls', 'list lineages (one per device table)')
    .option('--device <device>', 'device id or name')
    .option('--fleet <id>', 'only devices of this fleet', uuidArg('--fleet'))
    .addOption(new Option('--status <status>', 'only this status').choices(['active', 'paused', 'deleted']))
    .option('--page <n>', 'page number', positiveInt('--page'))
    .option('--limit <n>', 'rows per page (max 500)', positiveInt('--limit', 500))
    .option('--all', 'every page')
    .action(
      run(
        io,
        async (
          ctx,
          _args,
          o: {
            device?: string;
            fleet?: string;
            status?: string;
            page?: number;
            limit?: number;
            all?: boolean;
          },
        ) => {
          const get = (page: number) =>
            ctx.client.get<Page<LineageSummary>>('/lineages', {
              device_id: o.device,
              fleet_id: o.fleet,
              status: o.status,
              page: o.all ? page : (o.page ?? page),
              limit: o.limit ?? (o.all ? 500 : undefined),
            });
          await printList(ctx, { all: o.all === true, what: 'lineages' }, lineageCols, allPages(get), (p) =>
            p.total > p.page * p.limit
              ? `${p.items.length} of ${p.total} lineages (page ${p.page}); next: --page ${p.page + 1}, or --all\n`
              : '',
          );
        },
      ),
    );

  apiCommand(
    lineages,
    'show <lineage>',
    'one lineage: status, pause reasons, counters, schemas, bindings, reviews',
  ).action(
    run(io, async (ctx, [id = '']) => {
      const l = await ctx.client.get<LineageDetail>(`/lineages/${uuidArg('LINEAGE')(id)}`);
      if (ctx.json) return ctx.io.out(json(l));
      await ctx.io.out(renderLineage(l));
    }),
  );

  apiCommand(
    lineages,
    'reset <lineage>',
    'clear the materialization failure count (circuit breaker)',
    true,
  ).action(
    run(io, async (ctx, [id = '']) => {
      const lineage = uuidArg('LINEAGE')(id);
      const r = await ctx.client.mutate<CommandBody>(
        'POST',
        `/lineages/${lineage}/reset-materialization`,
        undefined,
        ctx.key(),
      );
      if (ctx.json) return ctx.io.out(json(r));
      await ctx.io.out(
        r.events.length
          ? `reset materialization of lineage ${lineage}: ${r.events.map((e) => e.type).join(', ')}\n`
          : `lineage ${lineage} had nothing to reset\n`,
      );
    }),
  );

  apiCommand(
    lineages,
    'authority <lineage> <mode>',
    'who wins when device and cloud both change a key: cloud_authoritative (the cloud may write rows back, and wins) or device_authoritative (the default)',
    true,
  ).action(
    run(io, async (ctx, [id = '', mode = '']) => {
      const lineage = uuidArg('LINEAGE')(id);
      if (mode !== 'cloud_authoritative' && mode !== 'device_authoritative')
        throw new CliError(
          EXIT.usage,
          `mode must be cloud_authoritative or device_authoritative, got ${JSON.stringify(mode)}`,
        );
      const r = await ctx.client.mutate<CommandBody>(
        'POST',
        `/lineages/${lineage}/authority`,
        { mode },
        ctx.key(),
      );
      if (ctx.json) return ctx.io.out(json(r));
      await ctx.io.out(
        r.events.length
          ? `lineage ${lineage} is now ${mode}${mode === 'cloud_authoritative' ? '; write rows back with `sluice rows write`' : ''}\n`
          : `lineage ${lineage} was already ${mode}\n`,
      );
    }),
  );

  registerLineageVerify(lineages, io);

  apiCommand(
    lineages,
    'resync <lineage>',
    'ask the device to send its table again (or some key buckets); rows it no longer holds leave the mirror',
    true,
  )
    .option('--buckets <list>', 'only these key buckets (0-255, comma-separated)')
    .action(
      run(io, async (ctx, [id = ''], o: { buckets?: string }) => {
        const lineage = uuidArg('LINEAGE')(id);
        const buckets = o.buckets?.split(',').map((b) => {
          const n = Number(b.trim());
          if (!Number.isInteger(n) || n < 0 || n > 255)
            throw new CliError(
              EXIT.usage,
              `--buckets must list whole numbers from 0 to 255, got ${JSON.stringify(b)}`,
            );
          return n;
        });
        const r = await ctx.client.mutate<CommandBody>(
          'POST',
          `/lineages/${lineage}/resync`,
          buckets ? { buckets } : undefined,
          ctx.key(),
        );
        if (ctx.json) return ctx.io.out(json(r));
        await ctx.io.out(
          `resync of lineage ${lineage} (${buckets ? `buckets ${buckets.join(',')}` : 'the whole table'}) requested: ${r.events.map((e) => e.type).join(', ')}
`,
        );
      }),
    );

  apiCommand(lineages, 'delete <lineage>', 'end a lineage; a later batch of its table starts a new one', true)
    .option('--reason <text>', 'recorded in the LineageDeleted event')
    .option('--yes', 'confirm: deleting cannot be undone')
    .action(
      run(io, async (ctx, [id = ''], o: { reason?: string; yes?: boolean }) => {
        const lineage = uuidArg('LINEAGE')(id);
        if (!o.yes)
          throw new CliError(
            EXIT.usage,
            `deleting lineage ${lineage} ends it for good (its events stay, for audits)`,
            `re-run with --yes to confirm`,
          );
        const r = await ctx.client.mutate<CommandBody>(
          'DELETE',
          `/lineages/${lineage}`,
          o.reason ? { reason: o.reason } : undefined,
          ctx.key(),
        );
        if (ctx.json) return ctx.io.out(json(r));
        await ctx.io.out(`deleted lineage ${lineage}; a later batch of its table starts a new lineage\n`);
      }),
    );
}

function renderLineage(l: LineageDetail): string {
  const status = l.status === 'paused' ? `paused (${l.pause_reasons.join(', ')})` : l.status;
  let out = fields([
    ['lineage', l.lineage_id],
    ['device', `${l.device_name} (${l.device_id})`],
    ['table', `${l.source_table} (${l.kind})`],
    ['status', status],
    ['staged rows', l.staged_rows],
    ['replaying rows', l.replaying_rows],
    ['materialized rows', l.materialized_rows],
    ['duplicates skipped', l.duplicates_skipped],
    ['current schema', l.current_schema_hash],
    ['approved schema', l.approved_schema_hash],
    ['last commit_seq', l.last_commit_seq],
    ['journal epoch', l.last_journal_epoch],
    ['replay', l.replay ? `${l.replay.replay_id} ${l.replay.state}` : null],
    ['mirror table', l.materialization.table_name],
    ['fleet', l.fleet_id],
    ['registry', l.registry_state ? `${l.registry_state} ${l.registry_id ?? ''}` : null],
    ['materialization errors', l.materialization_errors],
    ['last error', l.last_error],
    [
      'authority',
      l.write_back.authority === 'cloud_authoritative'
        ? `cloud_authoritative (last cloud_version ${l.write_back.last_cloud_version}; sluice rows cloud ${l.lineage_id})`
        : l.write_back.authority,
    ],
    ...(l.deleted_reason ? ([['deleted', l.deleted_reason]] as const) : []),
    ['updated', ago(l.updated_at)],
  ]);
  if (l.schema_versions.length)
    out += `\nschema versions\n${table(l.schema_versions, [
      { header: 'HASH', get: (v) => v.schema_hash.slice(0, 16) },
      { header: 'CLASS', get: (v) => v.classification },
      { header: 'FIRST SEEN', get: (v) => ago(v.first_seen_at) },
      { header: 'LAST SEEN', get: (v) => ago(v.last_seen_at) },
    ])}`;
  if (l.bindings.length)
    out += `\nbindings\n${table(l.bindings, [
      { header: 'COLUMN', get: (b) => b.column },
      { header: 'ACTION', get: (b) => b.action },
      { header: 'TARGET', get: (b) => b.target },
      { header: 'AFFINITY', get: (b) => b.affinity },
      { header: 'KEY', get: (b) => (b.pk_ordinal > 0 ? b.pk_ordinal : '') },
    ])}`;
  if (l.reviews.length)
    out += `\nreviews\n${table(
      l.reviews,
      reviewCols.filter((c) => c.header !== 'LINEAGE'),
    )}`;
  const open = l.open_review;
  if (open?.status === 'queued')
    out += `\nnext: sluice reviews show ${open.review_id}, then sluice reviews approve ${open.review_id} --claim\n`;
  else if (open?.status === 'in_review') out += `\nnext: sluice reviews approve ${open.review_id}\n`;
  else if (l.pause_reasons.includes('circuit_breaker'))
    out += `\nnext: fix the cause (last error above), then sluice lineages reset ${l.lineage_id}\n`;
  else if (l.registry_state === 'awaiting')
    out += `\nnext: its schema is decided for the whole scope: sluice registry reviews --table ${l.source_table} --status queued\n`;
  return out;
}
