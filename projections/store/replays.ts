/**
 * Replays a materializing projection carried out, so it can tell the domain once (CompleteReplay)
 * and again after a restart or rebuild if the domain has not recorded the completion yet.
 */
import type { CommandSender, Db, Log, Tx } from '../runner/types';

export type ReplayTableName = 'edge_mirror_replays' | 'edge_ts_replays';

export async function recordReplay(
  tx: Tx,
  table: ReplayTableName,
  r: { replay_id: string; lineage_id: string; stream_seq: number; rows: number; released_at: string },
): Promise<void> {
  await tx
    .insertInto(table)
    .values({ ...r, status: 'pending', completed_at: null })
    .onConflict((oc) => oc.column('replay_id').doNothing())
    .execute();
}

export async function markReplayCompleted(tx: Tx, table: ReplayTableName, replayId: string, at: string) {
  await tx
    .updateTable(table)
    .set({ status: 'completed', completed_at: at })
    .where('replay_id', '=', replayId)
    .execute();
}

export async function sendCompleteReplay(
  commands: CommandSender,
  lineageId: string,
  replayId: string,
  rows: number,
): Promise<void> {
  await commands.send(lineageId, { type: 'CompleteReplay', data: { replay_id: replayId, rows } });
}

/**
 * Re-send CompleteReplay for replays the domain has not confirmed and whose release was folded
 * without sending (during a rebuild) or by an earlier life of the process (which may have died
 * between its commit and its send). Later releases were sent live. The domain ignores repeats.
 */
export async function resendPendingReplays(
  db: Db,
  table: ReplayTableName,
  upTo: number,
  commands: CommandSender | undefined,
  log: Log,
  owns: (lineageId: string) => Promise<boolean> = async () => true,
): Promise<void> {
  if (!commands) return;
  const pending = await db
    .selectFrom(table)
    .select(['replay_id', 'lineage_id', 'rows'])
    .where('status', '=', 'pending')
    .where('stream_seq', '<=', upTo)
    .orderBy('released_at')
    .execute();
  for (const r of pending) {
    try {
      if (!(await owns(r.lineage_id))) continue;
      await sendCompleteReplay(commands, r.lineage_id, r.replay_id, r.rows);
    } catch (err) {
      log.warn(
        { lineage_id: r.lineage_id, replay_id: r.replay_id, err: (err as Error).message },
        'CompleteReplay not sent; will retry at next start',
      );
    }
  }
}
