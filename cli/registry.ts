/**
 * Registry verbs of the `sluice` CLI (SPEC §4.6, §7): registry entries and reviews, coalesced
 * mirror tables, devices and their fleets. HTTP API only, like every operator verb.
 */
import { type Command, Option } from 'commander';
import type {
  CoalescedMirrorView,
  DeviceView,
  Page,
  RegistryEntryView,
  RegistryReviewView,
} from '../projections';
import { CliError, EXIT, isCliError } from './client';
import { type ColumnAction, actionsFromFlags, parseActionsFile } from './column-actions';
import { type Io, json } from './output';
import { type Column, cell, fields, table } from './table';
import {
  type Ctx,
  ago,
  allPages,
  apiCommand,
  collect,
  positiveInt,
  printList,
  readActions,
  run,
  uuidArg,
} from './operator/common';

type RegistryBody = {
  registry_id: string;
  version: number;
  events: { id: string; type: string }[];
  review?: { review_id: string; status: string; action_version: number };
};

const entryCols: Column<RegistryEntryView>[] = [
  { header: 'REGISTRY', get: (e) => e.registry_id.slice(0, 16) },
  { header: 'SCOPE', get: (e) => `${e.scope}:${e.scope_id}`, max: 45 },
  { header: 'TABLE', get: (e) => e.source_table, max: 24 },
  { header: 'HASH', get: (e) => e.schema_hash.slice(0, 12) },
  { header: 'STATUS', get: (e) => e.status },
  { header: 'WAITED', get: (e) => e.enrolled_lineages, right: true },
  { header: 'COALESCED', get: (e) => e.coalesced_lineages, right: true },
  { header: 'REVIEW', get: (e) => e.review_id, max: 36 },
];

const reviewCols: Column<RegistryReviewView>[] = [
  { header: 'REVIEW', get: (r) => r.review_id, max: 36 },
  { header: 'SCOPE', get: (r) => `${r.scope}:${r.scope_id}`, max: 45 },
  { header: 'TABLE', get: (r) => r.source_table, max: 24 },
  { header: 'HASH', get: (r) => r.schema_hash.slice(0, 12) },
  { header: 'STATUS', get: (r) => r.status },
  { header: 'VERSION', get: (r) => r.action_version, right: true },
  { header: 'CLAIMED BY', get: (r) => r.claimed_by, max: 16 },
  { header: 'CREATED', get: (r) => ago(r.created_at) },
];

const mirrorCols: Column<CoalescedMirrorView>[] = [
  { header: 'TABLE', get: (t) => t.table_name, max: 63 },
  { header: 'SCOPE', get: (t) => `${t.scope}:${t.scope_id}`, max: 45 },
  { header: 'SOURCE', get: (t) => t.source_table, max: 24 },
  { header: 'GEN', get: (t) => t.generation, right: true },
  { header: 'LINEAGES', get: (t) => t.lineages, right: true },
  { header: 'ROWS', get: (t) => t.rows, right: true },
];

const deviceCols: Column<DeviceView>[] = [
  { header: 'DEVICE', get: (d) => d.device_id, max: 36 },
  { header: 'NAME', get: (d) => d.device_name, max: 32 },
  { header: 'FLEET', get: (d) => d.fleet_id ?? '-', max: 36 },
  { header: 'LINEAGES', get: (d) => d.lineages, right: true },
  { header: 'LAST SEEN', get: (d) => ago(d.last_seen_at) },
];

type Paging = { page?: number; limit?: number; all?: boolean };
const paged = (cmd: Command) =>
  cmd
    .option('--page <n>', 'page number', positiveInt('--page'))
    .option('--limit <n>', 'rows per page (max 500)', positiveInt('--limit', 500))
    .option('--all', 'every page');
const pageOf = (o: Paging, page: number) => ({
  page: o.all ? page : (o.page ?? page),
  limit: o.limit ?? (o.all ? 500 : undefined),
});

async function getRegistryReview(ctx: Ctx, id: string): Promise<RegistryReviewView> {
  const review = uuidArg('REVIEW')(id);
  try {
    return await ctx.client.get<RegistryReviewView>(`/registry-reviews/${review}`);
  } catch (err) {
    if (isCliError(err) && err.exitCode === EXIT.notFound)
      throw err.withHint('list them with `sluice registry reviews --status queued`; check --project');
    throw err;
  }
}

type Verb = 'claim' | 'approve' | 'reject' | 'abandon';

async function registryCommand(
  ctx: Ctx,
  review: RegistryReviewView,
  verb: Verb,
  body: Record<string, unknown>,
  key: string,
): Promise<RegistryBody> {
  try {
    return await ctx.client.mutate<RegistryBody>(
      'POST',
      `/registry-reviews/${review.review_id}/${verb}`,
      body,
      key,
    );
  } catch (err) {
    if (!isCliError(err)) throw err;
    const details = err.body?.details ?? {};
    if (err.code === 'stale_action_version')
      throw err.withHint(
        `the registry review is now at action_version ${cell(details.current_action_version)}: someone acted on it since; look again with \`sluice registry show ${review.review_id}\``,
      );
    if (err.code === 'illegal_transition' && (verb === 'approve' || verb === 'reject'))
      throw err.withHint(`claim it first: sluice registry claim ${review.review_id}   (or pass --claim)`);
    throw err;
  }
}

/** Claim first when asked and still queued; returns the action_version to quote next. */
async function maybeClaim(
  ctx: Ctx,
  review: RegistryReviewView,
  o: { claim?: boolean; actionVersion?: number },
): Promise<{ version: number; claim?: RegistryBody }> {
  const version = o.actionVersion ?? review.action_version;
  if (!o.claim || review.status !== 'queued') return { version };
  const claim = await registryCommand(
    ctx,
    review,
    'claim',
    { action_version: version },
    `${ctx.key()}:claim`,
  );
  return { version: claim.review?.action_version ?? version + 1, claim };
}

function assertOpen(review: RegistryReviewView, verb: string): void {
  if (review.status !== 'queued' && review.status !== 'in_review')
    throw new CliError(
      EXIT.conflict,
      `registry review ${review.review_id} is already ${review.status}${review.decided_by ? ` (by ${review.decided_by})` : ''}; nothing to ${verb}`,
      review.status === 'abandoned'
        ? 'the next batch of this schema opens a new registry review'
        : 'see the entry: sluice registry ls --table ' + review.source_table,
    );
}

function renderRegistryReview(r: RegistryReviewView): string {
  let out = fields([
    ['registry review', r.review_id],
    ['registry entry', r.registry_id],
    ['scope', `${r.scope} ${r.scope_id}`],
    ['table', r.source_table],
    ['schema hash', r.schema_hash],
    ['status', r.status],
    ['action_version', r.action_version],
    ['opened by', `lineage ${r.opened_by_lineage} (device ${r.opened_by_device})`],
    ['claimed by', r.claimed_by],
    ['decided by', r.decided_by],
    ['reason', r.reason],
    ['created', ago(r.created_at)],
  ]);
  const sc = r.schema_columns as {
    columns?: { name: string; decl_type_affinity?: string; pk_ordinal?: number; not_null?: boolean }[];
  } | null;
  if (Array.isArray(sc?.columns))
    out += `\ncolumns\n${table(sc.columns, [
      { header: 'COLUMN', get: (c) => c.name },
      { header: 'AFFINITY', get: (c) => c.decl_type_affinity },
      { header: 'KEY', get: (c) => (c.pk_ordinal ? c.pk_ordinal : '') },
      { header: 'NOT NULL', get: (c) => (c.not_null ? 'yes' : '') },
    ])}`;
  if (r.status === 'queued') out += `\nnext: sluice registry claim ${r.review_id}\n`;
  if (r.status === 'in_review')
    out += `\nnext: sluice registry approve ${r.review_id}   (or reject / abandon)\n`;
  return out;
}

export function registerRegistryCommands(program: Command, io: Io): void {
  const registry = program
    .command('registry')
    .description('registry coalescing: entries, registry reviews, coalesced mirror tables');

  paged(
    apiCommand(registry, 'ls', 'registry entries, one per (scope, table, schema hash)')
      .addOption(
        new Option('--status <status>', 'only this status').choices(['pending', 'approved', 'rejected']),
      )
      .option('--table <name>', 'only this source table')
      .option('--fleet <id>', 'only entries of this fleet', uuidArg('--fleet')),
  ).action(
    run(io, async (ctx, _args, o: Paging & { status?: string; table?: string; fleet?: string }) => {
      const get = (page: number) =>
        ctx.client.get<Page<RegistryEntryView>>('/registry', {
          status: o.status,
          source_table: o.table,
          fleet_id: o.fleet,
          ...pageOf(o, page),
        });
      await printList(ctx, { all: o.all === true, what: 'registry entries' }, entryCols, allPages(get));
    }),
  );

  paged(
    apiCommand(registry, 'reviews', 'registry reviews')
      .addOption(
        new Option('--status <status>', 'only this status').choices([
          'queued',
          'in_review',
          'approved',
          'rejected',
          'abandoned',
        ]),
      )
      .option('--table <name>', 'only this source table')
      .option('--fleet <id>', 'only reviews of this fleet', uuidArg('--fleet')),
  ).action(
    run(io, async (ctx, _args, o: Paging & { status?: string; table?: string; fleet?: string }) => {
      const get = (page: number) =>
        ctx.client.get<Page<RegistryReviewView>>('/registry-reviews', {
          status: o.status,
          source_table: o.table,
          fleet_id: o.fleet,
          ...pageOf(o, page),
        });
      await printList(ctx, { all: o.all === true, what: 'registry reviews' }, reviewCols, allPages(get));
    }),
  );

  apiCommand(registry, 'show <review>', 'one registry review with the columns of its schema').action(
    run(io, async (ctx, [id = '']) => {
      const r = await getRegistryReview(ctx, id);
      if (ctx.json) return ctx.io.out(json(r));
      await ctx.io.out(renderRegistryReview(r));
    }),
  );

  const versionOption = (cmd: Command) =>
    cmd.option(
      '--action-version <n>',
      'the version to quote (default: the review’s current one)',
      positiveInt('--action-version'),
    );

  versionOption(
    apiCommand(registry, 'claim <review>', 'take a queued registry review (queued → in_review)', true),
  ).action(
    run(io, async (ctx, [id = ''], o: { actionVersion?: number }) => {
      const review = await getRegistryReview(ctx, id);
      const r = await registryCommand(
        ctx,
        review,
        'claim',
        { action_version: o.actionVersion ?? review.action_version },
        ctx.key(),
      );
      if (ctx.json) return ctx.io.out(json(r));
      await ctx.io.out(
        `claimed registry review ${review.review_id} (${review.source_table} in ${review.scope} ${review.scope_id}), action_version ${r.review?.action_version ?? '?'}\n` +
          `next: sluice registry approve ${review.review_id}\n`,
      );
    }),
  );

  versionOption(
    apiCommand(
      registry,
      'approve <review>',
      'approve a registry review: every lineage in scope with this schema, now and later, materializes into the coalesced table',
      true,
    )
      .option('--actions <file>', 'column actions as JSON (a file, or - for stdin)')
      .option('--mirror <col[:name]>', 'mirror a column, optionally under another name (repeatable)', collect)
      .option('--ignore <col>', 'do not replicate this column (repeatable)', collect)
      .option('--defer <col>', 'decide later (repeatable)', collect)
      .option('--claim', 'claim the review first if it is still queued'),
  ).action(
    run(
      io,
      async (
        ctx,
        [id = ''],
        o: {
          actions?: string;
          mirror?: string[];
          ignore?: string[];
          defer?: string[];
          claim?: boolean;
          actionVersion?: number;
        },
      ) => {
        const review = await getRegistryReview(ctx, id);
        const sc = review.schema_columns as { columns?: { name: string }[] } | null;
        const known = sc?.columns?.map((c) => c.name);
        let actions: ColumnAction[] | undefined;
        if (o.actions) {
          if (o.mirror || o.ignore || o.defer)
            throw new CliError(EXIT.usage, '--actions cannot be combined with --mirror/--ignore/--defer');
          actions = parseActionsFile(readActions(o.actions), o.actions === '-' ? 'stdin' : o.actions);
        } else {
          actions = actionsFromFlags(
            {
              ...(o.mirror ? { mirror: o.mirror } : {}),
              ...(o.ignore ? { ignore: o.ignore } : {}),
              ...(o.defer ? { defer: o.defer } : {}),
            },
            known,
          );
        }
        assertOpen(review, 'approve');
        const { version, claim } = await maybeClaim(ctx, review, o);
        const r = await registryCommand(
          ctx,
          review,
          'approve',
          { action_version: version, ...(actions ? { column_actions: actions } : {}) },
          ctx.key(),
        );
        if (ctx.json) return ctx.io.out(json(claim ? { ...r, claim } : r));
        await ctx.io.out(
          `${claim ? 'claimed and ' : ''}approved registry review ${review.review_id}: every lineage of ${review.source_table} with schema ${review.schema_hash.slice(0, 12)} in ${review.scope} ${review.scope_id} now materializes into its coalesced table\n` +
            `watch it: sluice registry mirrors\n`,
        );
      },
    ),
  );

  for (const [verb, what] of [
    ['reject', 'reject a registry review: its lineages stay paused and keep their staged rows'],
    [
      'abandon',
      'withdraw a registry review undecided: its lineages stay paused; the next batch of the schema opens a new review',
    ],
  ] as const) {
    versionOption(
      apiCommand(registry, `${verb} <review>`, what, true)
        .requiredOption('--reason <text>', 'why (recorded in the event)')
        .option('--claim', 'claim the review first if it is still queued'),
    ).action(
      run(io, async (ctx, [id = ''], o: { reason: string; claim?: boolean; actionVersion?: number }) => {
        const review = await getRegistryReview(ctx, id);
        assertOpen(review, verb);
        const { version, claim } =
          verb === 'reject'
            ? await maybeClaim(ctx, review, o)
            : { version: o.actionVersion ?? review.action_version, claim: undefined };
        const r = await registryCommand(
          ctx,
          review,
          verb,
          { action_version: version, reason: o.reason },
          ctx.key(),
        );
        if (ctx.json) return ctx.io.out(json(claim ? { ...r, claim } : r));
        await ctx.io.out(
          `${verb === 'reject' ? 'rejected' : 'abandoned'} registry review ${review.review_id}: ${o.reason}\n` +
            `its lineages stay paused (schema_review) and keep their staged rows\n`,
        );
      }),
    );
  }

  apiCommand(
    registry,
    'consolidate',
    'move every device-scoped approval of the project into the coalesced table of its scope',
    true,
  ).action(
    run(io, async (ctx) => {
      const r = await ctx.client.mutate<{ lineages: number; entries: number }>(
        'POST',
        '/registry/consolidate',
        {},
        ctx.key(),
      );
      if (ctx.json) return ctx.io.out(json(r));
      await ctx.io.out(`consolidated ${r.lineages} lineages into ${r.entries} registry entries\n`);
    }),
  );

  paged(
    apiCommand(registry, 'mirrors', 'coalesced mirror tables')
      .option('--table <name>', 'only this source table')
      .option('--fleet <id>', 'only tables of this fleet', uuidArg('--fleet')),
  ).action(
    run(io, async (ctx, _args, o: Paging & { table?: string; fleet?: string }) => {
      const get = (page: number) =>
        ctx.client.get<Page<CoalescedMirrorView>>('/coalesced-mirrors', {
          source_table: o.table,
          fleet_id: o.fleet,
          ...pageOf(o, page),
        });
      await printList(ctx, { all: o.all === true, what: 'coalesced tables' }, mirrorCols, allPages(get));
    }),
  );

  // ------------------------------------------------------------------ devices
  const devices =
    program.commands.find((c) => c.name() === 'devices') ??
    program.command('devices').description('devices: fleets and broker credentials');
  paged(
    apiCommand(devices, 'ls', 'devices that sent batches, with their fleet').option(
      '--fleet <id>',
      'only devices of this fleet',
      uuidArg('--fleet'),
    ),
  ).action(
    run(io, async (ctx, _args, o: Paging & { fleet?: string }) => {
      const get = (page: number) =>
        ctx.client.get<Page<DeviceView>>('/devices', { fleet_id: o.fleet, ...pageOf(o, page) });
      await printList(ctx, { all: o.all === true, what: 'devices' }, deviceCols, allPages(get));
    }),
  );

  apiCommand(
    devices,
    'fleet <device> [fleet]',
    'put a device (id or name) in a fleet; --none takes it out of any',
    true,
  )
    .option('--none', 'in no fleet')
    .action(
      run(io, async (ctx, [device = '', fleet], o: { none?: boolean }) => {
        if (!o.none && !fleet) throw new CliError(EXIT.usage, 'give a fleet id, or --none');
        if (o.none && fleet) throw new CliError(EXIT.usage, 'give a fleet id or --none, not both');
        const fleetId = o.none ? null : uuidArg('FLEET')(fleet!);
        const r = await ctx.client.mutate<{ device_id: string; fleet_id: string | null; lineages: number }>(
          'PUT',
          `/devices/${encodeURIComponent(device)}/fleet`,
          { fleet_id: fleetId },
          ctx.key(),
        );
        if (ctx.json) return ctx.io.out(json(r));
        await ctx.io.out(
          `device ${r.device_id} is now in ${r.fleet_id ? `fleet ${r.fleet_id}` : 'no fleet'} (${r.lineages} lineages updated); ` +
            `new schemas of it are governed in that scope from now on\n`,
        );
      }),
    );
}
