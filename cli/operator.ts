/**
 * Operator verbs of the `sluice` CLI. They talk to the HTTP API only (never to NATS or the read
 * store directly), so they work from any machine that can reach it, with the token's permissions.
 */
import { readFileSync } from 'node:fs';
import { type Command, Option } from 'commander';
import { uuidv7 } from 'uuidv7';
import type {
  CursorPage,
  KeysetPage,
  LineageDetail,
  LineageSummary,
  MirrorRowsPage,
  MirrorRowView,
  Page,
  PendingControlView,
  RejectionView,
  ReviewView,
  StagedRowView,
} from '../projections';
import { DEFAULT_PROJECT_ID } from '../infra/config/env';
import { ApiClient, CliError, EXIT, isCliError } from './client';
import { type ColumnAction, actionsFromFlags, parseActionsFile } from './column-actions';
import { summarizeEvent } from './event-summary';
import { type Io, json } from './output';
import { type ProgressBar, progressBar } from './progress';
import { type Column, cell, fields, table, tableHeader, tableRows, widths } from './table';

export const DEFAULT_API_URL = 'http://127.0.0.1:8080';

type CommandBody = {
  lineage_id: string;
  version: number;
  events: { id: string; type: string }[];
  review?: { review_id: string; status: string; action_version: number };
  verify_id?: string;
};
/** A review as `GET /schema-reviews/{id}` answers: with its diff and the bindings in force. */
type ReviewDetail = ReviewView & {
  diff?: {
    against_hash: string | null;
    added: string[];
    removed: string[];
    retyped: { column: string; from: string; to: string }[];
    rekeyed: { column: string; from: number; to: number }[];
  } | null;
  current_bindings?: { column: string; action: string; target: string | null }[];
};
/** A verify run as `GET /lineages/{id}/verify` answers (docs/verify.md). */
type VerifyView = {
  lineage_id: string;
  verify_id: string;
  status: 'requested' | 'reported' | 'completed';
  trigger: string;
  columns: string[];
  requested_at: string;
  reported_at: string | null;
  completed_at: string | null;
  journal_epoch: string | null;
  through_commit_seq: number | null;
  outcome: 'equal' | 'divergent' | 'not_comparable' | null;
  divergent_buckets: number[];
  device_rows: number | null;
  mirror_rows: number | null;
  detail: string | null;
  resync_id: string | null;
};
type AuditItem = {
  seq: number;
  index: number;
  id: string;
  type: string;
  occurred_at: string;
  recorded_at: string;
  data: unknown;
  metadata: { actor?: string; causation_id?: string; correlation_id?: string };
};
type AsOf = { as_of: string; version: number; events: number; state: Record<string, unknown> };

type ApiOpts = { api: string; token?: string; project: string; json?: boolean; idempotencyKey?: string };
export type Ctx = Readonly<{ client: ApiClient; json: boolean; io: Io; key: () => string }>;

export const uuidArg = (what: string) => (v: string) => {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(v))
    throw new CliError(EXIT.usage, `${what} must be a UUID, got ${JSON.stringify(v)}`);
  return v.toLowerCase();
};
export const positiveInt =
  (what: string, max = Number.MAX_SAFE_INTEGER) =>
  (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > max)
      throw new CliError(
        EXIT.usage,
        `${what} must be a whole number from 1 to ${max}, got ${JSON.stringify(v)}`,
      );
    return n;
  };
export const collect = (v: string, prev: string[] = []) => [...prev, v];

/** The options every operator verb takes; each verb declares them so `--help` shows them. */
export function apiCommand(parent: Command, spec: string, description: string, mutates = false): Command {
  const cmd = parent
    .command(spec)
    .description(description)
    // Defaults come from the settings reader (cli/program.ts, withSettings): SLUICE_API_URL or
    // this environment's API, SLUICE_TOKEN, SLUICE_PROJECT_ID.
    .addOption(new Option('--api <url>', 'Sluice API base URL').default(DEFAULT_API_URL))
    .addOption(new Option('--token <token>', 'bearer token (default: $SLUICE_TOKEN)'))
    .addOption(new Option('--project <id>', 'project id').default(DEFAULT_PROJECT_ID))
    .option('--json', 'machine-readable output (JSON on stdout)');
  if (mutates)
    cmd.option(
      '--idempotency-key <key>',
      'Idempotency-Key of the request (default: a new one per invocation); repeating a request with the same key has no second effect',
    );
  return cmd;
}

/** Wrap an action: build the client from the options, then run it with the positional args. */
export function run<O>(
  io: Io,
  fn: (ctx: Ctx, args: readonly string[], opts: O) => Promise<void>,
): (...all: unknown[]) => Promise<void> {
  return async (...all) => {
    const cmd = all[all.length - 1] as Command;
    const o = cmd.opts<ApiOpts & O>();
    const project = uuidArg('--project')(o.project);
    const client = new ApiClient({ api: o.api, project, ...(o.token ? { token: o.token } : {}) });
    const key = o.idempotencyKey ?? `sluice-cli-${uuidv7()}`;
    const ctx: Ctx = { client, json: o.json === true, io, key: () => key };
    await fn(ctx, all.slice(0, -2) as string[], o);
  };
}

/** Every page of a list, one request at a time. */
export async function* allPages<T>(get: (page: number) => Promise<Page<T>>): AsyncGenerator<Page<T>> {
  for (let page = 1; ; page++) {
    const p = await get(page);
    yield p;
    if (p.items.length === 0 || page * p.limit >= p.total) return;
  }
}

/** Print a list: one page, or with `--all` every page streamed (a fixed-width table or JSON). */
export async function printList<P extends Page<unknown>>(
  ctx: Ctx,
  opts: { all?: boolean; what: string },
  cols: readonly Column<P['items'][number]>[],
  pages: AsyncGenerator<P>,
  footer?: (first: P) => string,
): Promise<void> {
  const { io } = ctx;
  if (!opts.all) {
    const first = (await pages.next()).value as P;
    if (ctx.json) return io.out(json(first));
    await io.out(first.items.length ? table(first.items, cols) : `no ${opts.what}\n`);
    if (footer) await io.out(footer(first));
    return;
  }
  let bar: ProgressBar | undefined;
  let w: number[] | undefined;
  let count = 0;
  let total = 0;
  let seen = 0;
  try {
    for await (const p of pages) {
      if (!bar) {
        total = p.total;
        bar = await progressBar(io, opts.what);
        if (total > 0) bar.update(0, total);
        if (ctx.json) await io.out('{"items":[');
      }
      if (ctx.json) {
        for (const item of p.items) await io.out(`${count++ === 0 ? '\n' : ',\n'}${JSON.stringify(item)}`);
      } else if (p.items.length) {
        if (!w) {
          w = widths(p.items, cols);
          await io.out(tableHeader(cols, w));
        }
        await io.out(tableRows(p.items, cols, w));
        count += p.items.length;
      }
      seen += p.items.length;
      if (total > 0) bar.update(seen, Math.max(total, seen));
    }
  } finally {
    bar?.stop();
  }
  if (ctx.json) await io.out(`${count ? '\n' : ''}],"total":${count}}\n`);
  else await io.out(count ? `${count} ${opts.what}\n` : `no ${opts.what}\n`);
}

export const ago = (iso: string | null | undefined) =>
  iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '-';

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

const reviewCols: Column<ReviewView>[] = [
  { header: 'REVIEW', get: (r) => r.review_id, max: 36 },
  { header: 'LINEAGE', get: (r) => r.lineage_id, max: 36 },
  { header: 'TABLE', get: (r) => r.source_table, max: 24 },
  { header: 'STATUS', get: (r) => r.status },
  { header: 'VERSION', get: (r) => r.action_version, right: true },
  { header: 'CLASS', get: (r) => r.classification },
  { header: 'CLAIMED BY', get: (r) => r.claimed_by, max: 16 },
  { header: 'CREATED', get: (r) => ago(r.created_at) },
];

type SchemaColumn = { name: string; decl_type_affinity?: string; pk_ordinal?: number; not_null?: boolean };
const schemaColumnsOf = (r: ReviewView): SchemaColumn[] | undefined => {
  const sc = r.schema_columns as { columns?: SchemaColumn[] } | null;
  return Array.isArray(sc?.columns) ? sc.columns : undefined;
};

export function registerOperatorCommands(program: Command, io: Io): void {
  // ------------------------------------------------------------------ lineages
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

  apiCommand(
    lineages,
    'verify <lineage>',
    'prove the mirror equals the device table: the device digests its rows, the cloud compares (docs/verify.md)',
    true,
  )
    .option('--wait', 'wait for the outcome (exit 4 when divergent or not comparable)')
    .option(
      '--timeout <s>',
      'with --wait: give up after this many seconds (default 300)',
      positiveInt('--timeout'),
    )
    .action(
      run(io, async (ctx, [id = ''], o: { wait?: boolean; timeout?: number }) => {
        const lineage = uuidArg('LINEAGE')(id);
        const r = await ctx.client.mutate<CommandBody>(
          'POST',
          `/lineages/${lineage}/verify`,
          undefined,
          ctx.key(),
        );
        const verifyId = r.verify_id;
        if (!o.wait || !verifyId) {
          if (ctx.json) return ctx.io.out(json(r));
          return ctx.io.out(
            verifyId
              ? `verify ${verifyId} of lineage ${lineage} requested; the device answers when it is online
` +
                  `follow it: sluice lineages verify ${lineage} --wait, or GET /lineages/${lineage}/verify
`
              : `no verify was requested for lineage ${lineage}
`,
          );
        }
        const deadline = Date.now() + (o.timeout ?? 300) * 1000;
        let v: VerifyView | undefined;
        for (;;) {
          v = await ctx.client
            .get<VerifyView>(`/lineages/${lineage}/verify`, { verify_id: verifyId })
            .catch((err: unknown) => {
              if (isCliError(err) && err.exitCode === EXIT.notFound) return undefined;
              throw err;
            });
          if (v?.status === 'completed') break;
          if (Date.now() > deadline)
            throw new CliError(
              EXIT.unexpected,
              `verify ${verifyId} of lineage ${lineage} is still ${v?.status ?? 'requested'} after ${o.timeout ?? 300}s`,
              'the device answers once it is online and has sent every change before its report; look again later with GET /lineages/ID/verify',
            );
          await new Promise((res) => setTimeout(res, 1000));
        }
        if (ctx.json) await ctx.io.out(json(v));
        else await ctx.io.out(renderVerify(v));
        if (v.outcome !== 'equal')
          throw new CliError(
            EXIT.conflict,
            `verify ${verifyId}: ${v.outcome}`,
            v.resync_id
              ? `the divergent buckets are being sent again (resync ${v.resync_id}); verify again once it is done`
              : 'see the detail above',
          );
      }),
    );

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

  // ------------------------------------------------------------------ reviews
  const reviews = program
    .command('reviews')
    .description('schema reviews: list, inspect, claim, approve, reject, reopen');
  apiCommand(reviews, 'ls', 'list schema reviews')
    .addOption(
      new Option('--status <status>', 'only this status').choices([
        'queued',
        'in_review',
        'approved',
        'rejected',
      ]),
    )
    .option('--lineage <id>', 'only this lineage', uuidArg('--lineage'))
    .option('--page <n>', 'page number', positiveInt('--page'))
    .option('--limit <n>', 'rows per page (max 500)', positiveInt('--limit', 500))
    .option('--all', 'every page')
    .action(
      run(
        io,
        async (
          ctx,
          _args,
          o: { status?: string; lineage?: string; page?: number; limit?: number; all?: boolean },
        ) => {
          const get = (page: number) =>
            ctx.client.get<Page<ReviewView>>('/schema-reviews', {
              status: o.status,
              lineage_id: o.lineage,
              page: o.all ? page : (o.page ?? page),
              limit: o.limit ?? (o.all ? 500 : undefined),
            });
          await printList(ctx, { all: o.all === true, what: 'reviews' }, reviewCols, allPages(get));
        },
      ),
    );

  apiCommand(reviews, 'show <review>', 'one review with the columns of the schema under review').action(
    run(io, async (ctx, [id = '']) => {
      const r = await getReview(ctx, id);
      if (ctx.json) return ctx.io.out(json(r));
      await ctx.io.out(renderReview(r));
    }),
  );

  apiCommand(reviews, 'claim <review>', 'take a queued review (queued → in_review)', true)
    .option(
      '--action-version <n>',
      'the version to quote (default: the review’s current one)',
      positiveInt('--action-version'),
    )
    .action(
      run(io, async (ctx, [id = ''], o: { actionVersion?: number }) => {
        const review = await getReview(ctx, id);
        const r = await reviewCommand(
          ctx,
          review,
          'claim',
          { action_version: o.actionVersion ?? review.action_version },
          ctx.key(),
        );
        if (ctx.json) return ctx.io.out(json(r));
        await ctx.io.out(
          `claimed review ${review.review_id} (lineage ${review.lineage_id}): ${r.review?.status ?? 'in_review'}, action_version ${r.review?.action_version ?? '?'}\n` +
            `next: sluice reviews approve ${review.review_id}   (or: sluice reviews reject ${review.review_id} --reason …)\n`,
        );
      }),
    );

  apiCommand(
    reviews,
    'approve <review>',
    'approve a review; columns without an option keep their current binding (rename, ignore, …), new ones are mirrored under their own name',
    true,
  )
    .option(
      '--actions <file>',
      'column actions as JSON (a file, or - for stdin): [{column, action, mirror_column_name?}]',
    )
    .option(
      '--mirror <col[:name]>',
      'mirror a column, optionally under another name (repeatable, or comma-separated)',
      collect,
    )
    .option('--ignore <col>', 'do not replicate this column (repeatable, or comma-separated)', collect)
    .option(
      '--defer <col>',
      'decide later; a deferred key or NOT NULL column keeps the lineage paused',
      collect,
    )
    .option('--claim', 'claim the review first if it is still queued')
    .option(
      '--action-version <n>',
      'the version to quote (default: the review’s current one)',
      positiveInt('--action-version'),
    )
    .action(
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
          const review = await getReview(ctx, id);
          const known = schemaColumnsOf(review)?.map((c) => c.name);
          let actions: ColumnAction[] | undefined;
          if (o.actions) {
            if (o.mirror || o.ignore || o.defer)
              throw new CliError(EXIT.usage, '--actions cannot be combined with --mirror/--ignore/--defer');
            actions = parseActionsFile(readActions(o.actions), o.actions === '-' ? 'stdin' : o.actions);
            const unknown = known ? actions.filter((a) => !known.includes(a.column)) : [];
            if (unknown.length)
              throw new CliError(
                EXIT.usage,
                `the schema under review has no column ${unknown.map((a) => JSON.stringify(a.column)).join(', ')}`,
                `its columns: ${known!.join(', ')}`,
              );
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
          let version = o.actionVersion ?? review.action_version;
          let claim: CommandBody | undefined;
          if (o.claim && review.status === 'queued') {
            claim = await reviewCommand(
              ctx,
              review,
              'claim',
              { action_version: version },
              `${ctx.key()}:claim`,
            );
            version = claim.review?.action_version ?? version + 1;
          }
          const r = await reviewCommand(
            ctx,
            review,
            'approve',
            { action_version: version, ...(actions ? { column_actions: actions } : {}) },
            ctx.key(),
          );
          if (ctx.json) return ctx.io.out(json(claim ? { ...r, claim } : r));
          const choices = actions?.length
            ? `${actions
                .map((a) =>
                  a.action === 'mirror' && a.mirror_column_name
                    ? `${a.column}→${a.mirror_column_name}`
                    : `${a.column}:${a.action}`,
                )
                .join(', ')}; other columns keep their bindings, new ones are mirrored under their own names`
            : 'columns keep their bindings, new ones are mirrored under their own names';
          await ctx.io.out(
            `${claim ? `claimed and ` : ''}approved review ${review.review_id} (lineage ${review.lineage_id}), action_version ${r.review?.action_version ?? '?'}: ${choices}\n` +
              `staged rows replay into the mirror in commit order; watch them: sluice rows mirror ${review.lineage_id}\n`,
          );
        },
      ),
    );

  apiCommand(
    reviews,
    'reject <review>',
    'reject a review: the lineage stays paused and keeps its staged rows',
    true,
  )
    .requiredOption('--reason <text>', 'why (recorded in the event)')
    .option('--claim', 'claim the review first if it is still queued')
    .option(
      '--action-version <n>',
      'the version to quote (default: the review’s current one)',
      positiveInt('--action-version'),
    )
    .action(
      run(io, async (ctx, [id = ''], o: { reason: string; claim?: boolean; actionVersion?: number }) => {
        const review = await getReview(ctx, id);
        assertOpen(review, 'reject');
        let version = o.actionVersion ?? review.action_version;
        let claim: CommandBody | undefined;
        if (o.claim && review.status === 'queued') {
          claim = await reviewCommand(
            ctx,
            review,
            'claim',
            { action_version: version },
            `${ctx.key()}:claim`,
          );
          version = claim.review?.action_version ?? version + 1;
        }
        const r = await reviewCommand(
          ctx,
          review,
          'reject',
          { action_version: version, reason: o.reason },
          ctx.key(),
        );
        if (ctx.json) return ctx.io.out(json(claim ? { ...r, claim } : r));
        await ctx.io.out(
          `rejected review ${review.review_id}: ${o.reason}\nlineage ${review.lineage_id} stays paused and keeps its staged rows\n`,
        );
      }),
    );

  apiCommand(reviews, 'reopen <review>', 'queue a rejected review again (rejected → queued)', true)
    .option(
      '--action-version <n>',
      'the version to quote (default: the review’s current one)',
      positiveInt('--action-version'),
    )
    .action(
      run(io, async (ctx, [id = ''], o: { actionVersion?: number }) => {
        const review = await getReview(ctx, id);
        if (review.status !== 'rejected')
          throw new CliError(
            EXIT.conflict,
            `review ${review.review_id} is ${review.status}; only a rejected review can be reopened`,
          );
        const r = await reviewCommand(
          ctx,
          review,
          'reopen',
          { action_version: o.actionVersion ?? review.action_version },
          ctx.key(),
        );
        if (ctx.json) return ctx.io.out(json(r));
        await ctx.io.out(
          `reopened review ${review.review_id}: ${r.review?.status ?? 'queued'}, action_version ${r.review?.action_version ?? '?'}\n` +
            `next: sluice reviews approve ${review.review_id} --claim\n`,
        );
      }),
    );

  // ------------------------------------------------------------------ rows
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

  // ------------------------------------------------------------------ audit
  const audit = program.command('audit').description('the event history of a lineage');
  apiCommand(
    audit,
    'replay <lineage>',
    'print the lineage’s events in order; with --as-of, its state at that time',
  )
    .option('--as-of <time>', 'ISO-8601 time, e.g. 2026-04-28T09:00:00Z')
    .action(
      run(io, async (ctx, [id = ''], o: { asOf?: string }) => {
        const lineage = uuidArg('LINEAGE')(id);
        if (o.asOf !== undefined) {
          if (!Number.isFinite(Date.parse(o.asOf)))
            throw new CliError(EXIT.usage, `--as-of must be an ISO-8601 time, got ${JSON.stringify(o.asOf)}`);
          const s = await ctx.client.get<AsOf>(`/lineages/${lineage}/events`, { as_of: o.asOf });
          if (ctx.json) return ctx.io.out(json(s));
          await ctx.io.out(renderState(lineage, s));
          return;
        }
        const cols: Column<AuditItem>[] = [
          { header: 'SEQ', get: (e) => e.seq, right: true },
          { header: 'OCCURRED AT', get: (e) => ago(e.occurred_at) },
          { header: 'TYPE', get: (e) => e.type },
          { header: 'ACTOR', get: (e) => e.metadata?.actor, max: 16 },
          { header: 'WHAT', get: (e) => summarizeEvent(e.type, e.data), max: 120 },
        ];
        const w = [8, 20, 22, 16, 120];
        let after: string | undefined;
        let n = 0;
        if (ctx.json) await ctx.io.out(`{"lineage_id":${JSON.stringify(lineage)},"items":[`);
        else await ctx.io.out(tableHeader(cols, w));
        for (;;) {
          const p = await ctx.client.get<KeysetPage<AuditItem>>(`/lineages/${lineage}/events`, {
            limit: 500,
            after,
          });
          if (ctx.json) {
            for (const e of p.items) await ctx.io.out(`${n++ === 0 ? '\n' : ',\n'}${JSON.stringify(e)}`);
          } else {
            await ctx.io.out(tableRows(p.items, cols, w));
            n += p.items.length;
          }
          if (!p.next_cursor) break;
          after = p.next_cursor;
        }
        await ctx.io.out(ctx.json ? `${n ? '\n' : ''}]}\n` : `${n} events\n`);
      }),
    );

  // ------------------------------------------------------------------ controls, rejections
  const controls = program.command('controls').description('controls sent to devices (pause, resume, …)');
  apiCommand(controls, 'ls', 'list controls; by default those the device has not acknowledged')
    .option('--lineage <id>', 'only this lineage', uuidArg('--lineage'))
    .addOption(new Option('--status <status>', 'which controls').choices(['pending', 'acknowledged', 'all']))
    .option('--page <n>', 'page number', positiveInt('--page'))
    .option('--limit <n>', 'rows per page (max 500)', positiveInt('--limit', 500))
    .option('--all', 'every page')
    .action(
      run(
        io,
        async (
          ctx,
          _args,
          o: { lineage?: string; status?: string; page?: number; limit?: number; all?: boolean },
        ) => {
          const get = (page: number) =>
            ctx.client.get<Page<PendingControlView>>('/pending-controls', {
              lineage_id: o.lineage,
              status: o.status,
              page: o.all ? page : (o.page ?? page),
              limit: o.limit ?? (o.all ? 500 : undefined),
            });
          const status = o.status ?? 'pending';
          await printList(
            ctx,
            { all: o.all === true, what: status === 'all' ? 'controls' : `${status} controls` },
            [
              { header: 'CONTROL', get: (c) => c.control_id, max: 36 },
              { header: 'LINEAGE', get: (c) => c.lineage_id, max: 36 },
              { header: 'DEVICE', get: (c) => c.device_name, max: 20 },
              { header: 'TABLE', get: (c) => c.source_table, max: 20 },
              { header: 'KIND', get: (c) => c.control_kind },
              { header: 'WATERMARK', get: (c) => c.server_watermark, right: true },
              { header: 'STATUS', get: (c) => c.status },
              { header: 'DELIVERIES', get: (c) => c.deliveries, right: true },
              { header: 'ISSUED', get: (c) => ago(c.issued_at) },
              { header: 'REASON', get: (c) => c.reason, max: 40 },
            ],
            allPages(get),
            () =>
              status === 'all'
                ? ''
                : `(showing ${status} controls; --status ${status === 'pending' ? 'acknowledged' : 'pending'} or --status all for the others)\n`,
          );
        },
      ),
    );

  const rejections = program.command('rejections').description('uplinks the cloud refused, with their code');
  apiCommand(rejections, 'ls', 'list rejected uplinks, newest first')
    .option('--code <code>', 'only this rejection code (e.g. invalid_schema_hash)')
    .option('--device <key>', 'only this device ({topic_slug}/{device_name})')
    .option('--page <n>', 'page number', positiveInt('--page'))
    .option('--limit <n>', 'rows per page (max 500)', positiveInt('--limit', 500))
    .option('--all', 'every page')
    .action(
      run(
        io,
        async (
          ctx,
          _args,
          o: { code?: string; device?: string; page?: number; limit?: number; all?: boolean },
        ) => {
          const get = (page: number) =>
            ctx.client.get<Page<RejectionView>>('/rejections', {
              code: o.code,
              device: o.device,
              page: o.all ? page : (o.page ?? page),
              limit: o.limit ?? (o.all ? 500 : undefined),
            });
          await printList(
            ctx,
            { all: o.all === true, what: 'rejections' },
            [
              { header: 'SEQ', get: (r) => r.stream_seq, right: true },
              { header: 'RECEIVED', get: (r) => ago(r.received_at) },
              { header: 'DEVICE', get: (r) => r.device_key, max: 32 },
              { header: 'KIND', get: (r) => r.kind },
              { header: 'CODE', get: (r) => r.code },
              { header: 'MESSAGE', get: (r) => r.message, max: 80 },
            ],
            allPages(get),
          );
        },
      ),
    );
}

function readInput(what: string, path: string): string {
  try {
    return readFileSync(path === '-' ? 0 : path, 'utf8');
  } catch (err) {
    throw new CliError(EXIT.usage, `cannot read ${what} ${path}: ${(err as Error).message}`);
  }
}

function parseJsonArg(what: string, text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new CliError(EXIT.usage, `${what} is not JSON: ${(err as Error).message}`);
  }
}

export function readActions(path: string): string {
  try {
    return readFileSync(path === '-' ? 0 : path, 'utf8');
  } catch (err) {
    throw new CliError(EXIT.usage, `cannot read --actions ${path}: ${(err as Error).message}`);
  }
}

async function getReview(ctx: Ctx, id: string): Promise<ReviewDetail> {
  const review = uuidArg('REVIEW')(id);
  try {
    return await ctx.client.get<ReviewDetail>(`/schema-reviews/${review}`);
  } catch (err) {
    if (isCliError(err) && err.exitCode === EXIT.notFound)
      throw err.withHint('list reviews with `sluice reviews ls --status queued`; check --project');
    throw err;
  }
}

/** A decided review cannot change; say so before asking the server. */
function assertOpen(review: ReviewView, verb: string): void {
  if (review.status === 'approved' || review.status === 'rejected')
    throw new CliError(
      EXIT.conflict,
      `review ${review.review_id} is already ${review.status}${review.decided_by ? ` (by ${review.decided_by})` : ''}; nothing to ${verb}`,
      review.status === 'rejected'
        ? `reopen it first: sluice reviews reopen ${review.review_id}`
        : `see the lineage: sluice lineages show ${review.lineage_id}`,
    );
}

async function reviewCommand(
  ctx: Ctx,
  review: ReviewView,
  verb: 'claim' | 'approve' | 'reject' | 'reopen',
  body: Record<string, unknown>,
  key: string,
): Promise<CommandBody> {
  try {
    return await ctx.client.mutate<CommandBody>(
      'POST',
      `/schema-reviews/${review.review_id}/${verb}`,
      body,
      key,
    );
  } catch (err) {
    if (!isCliError(err)) throw err;
    const details = err.body?.details ?? {};
    if (err.code === 'stale_action_version')
      throw err.withHint(
        `the review is now at action_version ${cell(details.current_action_version)}${
          details.status ? ` (${cell(details.status)})` : ''
        }: someone acted on it since; look again with \`sluice reviews show ${review.review_id}\` and retry`,
      );
    if (err.code === 'illegal_transition' && verb !== 'claim')
      throw err.withHint(`claim it first: sluice reviews claim ${review.review_id}   (or pass --claim)`);
    if (err.code === 'illegal_transition')
      throw err.withHint(`only a queued review can be claimed; see sluice reviews show ${review.review_id}`);
    throw err;
  }
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

function renderVerify(v: VerifyView): string {
  let out = fields([
    ['verify', v.verify_id],
    ['lineage', v.lineage_id],
    ['outcome', v.outcome ?? v.status],
    ['trigger', v.trigger],
    ['columns', v.columns.join(', ')],
    ['position', v.journal_epoch ? `${v.journal_epoch} through commit_seq ${v.through_commit_seq}` : null],
    ['device rows', v.device_rows],
    ['mirror rows', v.mirror_rows],
    ['divergent buckets', v.divergent_buckets.length ? v.divergent_buckets.join(', ') : null],
    ['repair', v.resync_id ? `resync ${v.resync_id}` : null],
    ['detail', v.detail],
    ['requested', ago(v.requested_at)],
  ]);
  if (v.outcome === 'equal') out += '\nthe mirror equals the device table in the verified columns\n';
  return out;
}

function renderReview(r: ReviewDetail): string {
  let out = fields([
    ['review', r.review_id],
    ['lineage', r.lineage_id],
    ['table', r.source_table],
    ['status', r.status],
    ['action_version', r.action_version],
    ['classification', r.classification],
    ['schema hash', r.schema_hash],
    ['claimed by', r.claimed_by],
    ['decided by', r.decided_by],
    ['reason', r.reason],
    ['created', ago(r.created_at)],
  ]);
  const cols = schemaColumnsOf(r);
  out += cols
    ? `\ncolumns\n${table(cols, [
        { header: 'NAME', get: (c) => c.name },
        { header: 'AFFINITY', get: (c) => c.decl_type_affinity },
        { header: 'KEY', get: (c) => (c.pk_ordinal ? c.pk_ordinal : '') },
        { header: 'NOT NULL', get: (c) => (c.not_null ? 'yes' : '') },
      ])}`
    : '\ncolumns: not sent by the device yet (the cloud asked it to re-announce its schema; they come with its next batch)\n';
  const d = r.diff;
  if (d) {
    const changes = [
      ...d.added.map((c) => `+ ${c}`),
      ...d.removed.map((c) => `- ${c}`),
      ...d.retyped.map((c) => `~ ${c.column}: ${c.from} → ${c.to}`),
      ...d.rekeyed.map((c) => `~ ${c.column}: key position ${c.from} → ${c.to}`),
    ];
    out += `\nagainst ${d.against_hash ? `the approved schema ${d.against_hash.slice(0, 12)}` : 'nothing approved yet'}: ${
      changes.length ? `\n${changes.map((c) => `  ${c}`).join('\n')}\n` : 'no column changes\n'
    }`;
  }
  if (r.current_bindings?.length)
    out += `\ncurrent bindings (kept by an approval unless changed)\n${table(r.current_bindings, [
      { header: 'COLUMN', get: (b) => b.column },
      { header: 'ACTION', get: (b) => b.action },
      { header: 'TARGET', get: (b) => b.target },
    ])}`;
  if (r.status === 'queued')
    out += `\nnext: sluice reviews claim ${r.review_id}   (or approve with --claim)\n`;
  if (r.status === 'in_review')
    out += `\nnext: sluice reviews approve ${r.review_id} [--mirror col:name] [--ignore col]   or   sluice reviews reject ${r.review_id} --reason …\n`;
  return out;
}

function renderState(lineage: string, s: AsOf): string {
  const st = s.state as {
    status: string;
    device_name?: string;
    source_table?: string;
    pause_reasons?: string[];
    approved_hash?: string | null;
    staged_rows?: number;
    replaying_rows?: number;
    materialized_rows?: number;
    last_commit_seq?: number;
    consecutive_failures?: number;
    reviews?: { review_id: string; status: string; action_version: number; classification: string }[];
    bindings?: { column: string; action: string; target: string | null }[];
  };
  let out = `lineage ${lineage} as of ${s.as_of}: version ${s.version}, ${s.events} events folded\n`;
  if (st.status !== 'registered')
    return `${out}${
      st.status === 'unregistered' ? 'not registered yet at that time\n' : `status: ${st.status}\n`
    }`;
  out += fields([
    ['device', st.device_name],
    ['table', st.source_table],
    ['status', st.pause_reasons?.length ? `paused (${st.pause_reasons.join(', ')})` : 'active'],
    ['approved schema', st.approved_hash],
    ['staged rows', st.staged_rows],
    ['replaying rows', st.replaying_rows],
    ['materialized rows', st.materialized_rows],
    ['last commit_seq', st.last_commit_seq],
    ['consecutive failures', st.consecutive_failures],
  ]);
  if (st.reviews?.length)
    out += `\nreviews\n${table(st.reviews, [
      { header: 'REVIEW', get: (r) => r.review_id },
      { header: 'STATUS', get: (r) => r.status },
      { header: 'VERSION', get: (r) => r.action_version, right: true },
      { header: 'CLASS', get: (r) => r.classification },
    ])}`;
  if (st.bindings?.length)
    out += `\nbindings\n${table(st.bindings, [
      { header: 'COLUMN', get: (b) => b.column },
      { header: 'ACTION', get: (b) => b.action },
      { header: 'TARGET', get: (b) => b.target },
    ])}`;
  return `${out}\nthe full state: --json\n`;
}
