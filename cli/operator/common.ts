/**
 * What every operator verb shares: the API options and the client built from them (`apiCommand`,
 * `run`), argument parsers, paging and list printing, times, and reading a file or stdin.
 */
import { readFileSync } from 'node:fs';
import { type Command, Option } from 'commander';
import { uuidv7 } from 'uuidv7';
import type { Page } from '../../projections';
import { DEFAULT_PROJECT_ID } from '../../infra/config/env';
import { ApiClient, CliError, EXIT } from '../client';
import { type Io, json } from '../output';
import { type ProgressBar, progressBar } from '../progress';
import { type Column, table, tableHeader, tableRows, widths } from '../table';

export const DEFAULT_API_URL = 'http://127.0.0.1:8080';

/** A lineage command's answer: the events it recorded (a review verb adds the review, verify its id). */
export type CommandBody = {
  lineage_id: string;
  version: number;
  events: { id: string; type: string }[];
  review?: { review_id: string; status: string; action_version: number };
  verify_id?: string;
};

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

/** A file's text, or stdin's for `-`; a usage error names the option when it cannot be read. */
export function readInput(what: string, path: string): string {
  try {
    return readFileSync(path === '-' ? 0 : path, 'utf8');
  } catch (err) {
    throw new CliError(EXIT.usage, `cannot read ${what} ${path}: ${(err as Error).message}`);
  }
}

/** The `--actions` file of an approval (`sluice reviews approve`, `sluice registry approve`). */
export function readActions(path: string): string {
  return readInput('--actions', path);
}
