/**
 * `sluice lineages verify`: ask the device to digest its table and the cloud to compare it with
 * the mirror (docs/verify.md); with `--wait`, follow the run to its outcome.
 */
import type { Command } from 'commander';
import { CliError, EXIT, isCliError } from '../client';
import { type Io, json } from '../output';
import { fields } from '../table';
import { type CommandBody, ago, apiCommand, positiveInt, run, uuidArg } from './common';

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

export function registerLineageVerify(lineages: Command, io: Io): void {
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
