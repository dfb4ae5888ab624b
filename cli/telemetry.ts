/**
 * `sluice telemetry read|fleet|project|tables|points`: telemetry read back through the HTTP API
 * (docs/telemetry.md): rows of a time range, or time buckets with min/avg/max/last/count per
 * field and a sparkline of one field over the buckets.
 */
import type { Command } from 'commander';
import { CliError, EXIT } from './client';
import { type Ctx, apiCommand, run } from './operator/common';
import { type Io, json } from './output';
import { type Column, table } from './table';
import { sparkline } from './sparkline';

type Agg = { min: number | null; max: number | null; avg: number | null; count: number; last: number | null };
type Bucket = { start: string; rows: number; fields: Record<string, Agg> };
type Row = { device_id: string; ts: string; time: string; values: Record<string, unknown> };
type TelemetryPage = {
  table: string | null;
  coalesced: boolean;
  fields: { name: string; affinity: string }[];
  bucket_seconds: number | null;
  rows?: Row[];
  buckets?: Bucket[];
  next_cursor: string | null;
};

type ReadOpts = {
  from?: string;
  to?: string;
  fields?: string;
  bucket?: string;
  device?: string;
  limit?: string;
  cursor?: string;
  all?: boolean;
  chart?: string;
};

function readCommand(parent: Command, spec: string, description: string, scoped: boolean): Command {
  const cmd = apiCommand(parent, spec, description)
    .option('--from <time>', 'first instant, ISO 8601 (e.g. 2026-04-28T09:00:00Z)')
    .option('--to <time>', 'end of the range (exclusive), ISO 8601')
    .option('--fields <names>', 'comma-separated fields (default: all)')
    .option('--bucket <width>', 'time buckets with aggregates: 30s, 5m, 1h, 1d or seconds')
    .option('--limit <n>', 'rows or buckets per page (at most 1000)')
    .option('--cursor <cursor>', 'continue after a previous page (its next cursor)')
    .option('--all', 'follow the cursor to the end of the range')
    .option(
      '--chart <field>',
      'with --bucket: the field whose average the sparkline draws (default: the first)',
    );
  if (scoped) cmd.option('--device <device>', 'only this device (UUID or name)');
  return cmd;
}

async function readPages(ctx: Ctx, path: string, o: ReadOpts): Promise<TelemetryPage> {
  const query = {
    from: o.from,
    to: o.to,
    fields: o.fields,
    bucket: o.bucket,
    device: o.device,
    limit: o.limit,
  };
  let page = await ctx.client.get<TelemetryPage>(path, { ...query, cursor: o.cursor });
  const rows = [...(page.rows ?? [])];
  const buckets = [...(page.buckets ?? [])];
  while (o.all && page.next_cursor !== null) {
    page = await ctx.client.get<TelemetryPage>(path, { ...query, cursor: page.next_cursor });
    rows.push(...(page.rows ?? []));
    buckets.push(...(page.buckets ?? []));
  }
  return {
    ...page,
    ...(page.bucket_seconds === null ? { rows } : { buckets }),
  };
}

const short = (id: string) => id.slice(0, 8);

/** The page as text: a table, a sparkline over buckets, and how to get the next page. */
export function renderTelemetry(page: TelemetryPage, o: Pick<ReadOpts, 'chart'>): string {
  if (page.table === null) return 'no telemetry materialized yet (the lineage waits for an approval)\n';
  let out = '';
  if (page.bucket_seconds === null) {
    const rows = page.rows ?? [];
    const names = [...new Set(rows.flatMap((r) => Object.keys(r.values)))];
    const cols: Column<Row>[] = [
      { header: 'time', get: (r) => r.time },
      ...(page.coalesced ? [{ header: 'device', get: (r: Row) => short(r.device_id) }] : []),
      ...names.map((n) => ({ header: n, get: (r: Row) => r.values[n], right: true })),
    ];
    out += rows.length ? table(rows, cols) : 'no rows in this range\n';
  } else {
    const buckets = page.buckets ?? [];
    const names = [...new Set(buckets.flatMap((b) => Object.keys(b.fields)))];
    const fmt = (v: number | null) =>
      v === null ? null : Number.isInteger(v) ? v : Number(v.toPrecision(6));
    const cols: Column<Bucket>[] = [
      { header: 'bucket', get: (b) => b.start },
      { header: 'rows', get: (b) => b.rows, right: true },
      ...names.flatMap((n) =>
        (['min', 'avg', 'max', 'last'] as const).map((k) => ({
          header: `${n} ${k}`,
          get: (b: Bucket) => fmt(b.fields[n]?.[k] ?? null),
          right: true,
        })),
      ),
    ];
    out += buckets.length ? table(buckets, cols) : 'no rows in this range\n';
    const field = o.chart ?? names[0];
    if (field !== undefined && buckets.length > 1) {
      if (!names.includes(field)) {
        throw new CliError(
          EXIT.usage,
          `--chart ${field}: not a field of these buckets`,
          `fields: ${names.join(', ')}`,
        );
      }
      const avgs = buckets.map((b) => b.fields[field]?.avg ?? null);
      const known = avgs.filter((v): v is number => v !== null);
      out += `\n${field} avg  ${sparkline(avgs)}  ${fmt(Math.min(...known))} … ${fmt(Math.max(...known))}\n`;
    }
  }
  if (page.next_cursor !== null) out += `\nmore: --cursor ${page.next_cursor} (or --all)\n`;
  return out;
}

export function registerTelemetryCommands(program: Command, io: Io): void {
  const telemetry = program
    .command('telemetry')
    .description('read telemetry: rows of a time range, or time buckets with aggregates (docs/telemetry.md)');

  const show = async (ctx: Ctx, path: string, o: ReadOpts) => {
    const page = await readPages(ctx, path, o);
    await ctx.io.out(ctx.json ? json(page) : renderTelemetry(page, o));
  };

  readCommand(telemetry, 'read <lineage>', "a lineage's telemetry", false).action(
    run<ReadOpts>(io, (ctx, [lineage], o) =>
      show(ctx, `/lineages/${encodeURIComponent(lineage!)}/telemetry`, o),
    ),
  );
  readCommand(telemetry, 'fleet <fleet> <table>', "a fleet's coalesced telemetry table", true).action(
    run<ReadOpts>(io, (ctx, [fleet, name], o) =>
      show(ctx, `/fleets/${encodeURIComponent(fleet!)}/telemetry/${encodeURIComponent(name!)}`, o),
    ),
  );
  readCommand(telemetry, 'project <table>', "the project's coalesced telemetry table", true).action(
    run<ReadOpts>(io, (ctx, [name], o) => show(ctx, `/telemetry/${encodeURIComponent(name!)}`, o)),
  );

  type TableItem = {
    table_name: string;
    scope: string;
    scope_id: string;
    source_table: string;
    fields: { name: string }[];
  };
  apiCommand(telemetry, 'tables', 'the coalesced telemetry tables of the project')
    .option('--fleet <fleet>', 'only this fleet’s')
    .action(
      run<{ fleet?: string }>(io, async (ctx, _args, o) => {
        const r = await ctx.client.get<{ items: TableItem[] }>('/telemetry', { fleet_id: o.fleet });
        await ctx.io.out(
          ctx.json
            ? json(r)
            : table(r.items, [
                { header: 'table', get: (t) => t.table_name, max: 63 },
                { header: 'scope', get: (t) => t.scope },
                { header: 'scope_id', get: (t) => t.scope_id, max: 36 },
                { header: 'source_table', get: (t) => t.source_table },
                { header: 'fields', get: (t) => t.fields.map((f) => f.name) },
              ]),
        );
      }),
    );

  type Point = {
    device_name: string;
    source_table: string;
    name: string;
    source_column: string;
    affinity: string;
  };
  apiCommand(telemetry, 'points', 'data points: the named, typed series approvals bound')
    .option('--device <device>', 'only this device (UUID or name)')
    .option('--table <table>', 'only this source table')
    .action(
      run<{ device?: string; table?: string }>(io, async (ctx, _args, o) => {
        const r = await ctx.client.get<{ items: Point[] }>('/data-points', {
          device_id: o.device,
          source_table: o.table,
        });
        await ctx.io.out(
          ctx.json
            ? json(r)
            : table(r.items, [
                { header: 'device', get: (p) => p.device_name },
                { header: 'table', get: (p) => p.source_table },
                { header: 'data_point', get: (p) => p.name },
                { header: 'column', get: (p) => p.source_column },
                { header: 'type', get: (p) => p.affinity },
              ]),
        );
      }),
    );
}
