/**
 * `sluice audit replay`: a lineage's events in order, or its state folded as of a time.
 */
import type { Command } from 'commander';
import type { KeysetPage } from '../../projections';
import { CliError, EXIT } from '../client';
import { summarizeEvent } from '../event-summary';
import { type Io, json } from '../output';
import { type Column, fields, table, tableHeader, tableRows } from '../table';
import { ago, apiCommand, run, uuidArg } from './common';

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

export function registerAuditCommands(program: Command, io: Io): void {
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
