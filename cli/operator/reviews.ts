/**
 * `sluice reviews ls|show|claim|approve|reject|reopen`: the schema review workflow, with hints for
 * the conflicts a person runs into (stale action_version, a review not claimed yet).
 */
import { type Command, Option } from 'commander';
import type { Page, ReviewView } from '../../projections';
import { CliError, EXIT, isCliError } from '../client';
import { type ColumnAction, actionsFromFlags, parseActionsFile } from '../column-actions';
import { type Io, json } from '../output';
import { cell } from '../table';
import {
  type CommandBody,
  type Ctx,
  allPages,
  apiCommand,
  collect,
  positiveInt,
  printList,
  readActions,
  run,
  uuidArg,
} from './common';
import { type ReviewDetail, renderReview, reviewCols, schemaColumnsOf } from './review-render';

export function registerReviewCommands(program: Command, io: Io): void {
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
