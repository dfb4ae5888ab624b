/**
 * `sluice rejections ls`: uplinks the cloud refused, with their code, newest first.
 */
import type { Command } from 'commander';
import type { Page, RejectionView } from '../../projections';
import type { Io } from '../output';
import { ago, allPages, apiCommand, positiveInt, printList, run } from './common';

export function registerRejectionCommands(program: Command, io: Io): void {
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
