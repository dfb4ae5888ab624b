/**
 * `sluice controls ls`: controls sent to devices (pause, resume, …), pending or acknowledged.
 */
import { type Command, Option } from 'commander';
import type { Page, PendingControlView } from '../../projections';
import type { Io } from '../output';
import { ago, allPages, apiCommand, positiveInt, printList, run, uuidArg } from './common';

export function registerControlCommands(program: Command, io: Io): void {
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
}
