import type { Logger } from 'pino';
import type { ReconcileResult } from '../capture/install';

/**
 * What a reconcile did, said once: skipped tables (each reason once per process), tables newly
 * captured, first-run snapshots, installed triggers and converted journals.
 */
export function reconcileLogger(log: Logger): (res: ReconcileResult) => void {
  const reportedSkips = new Set<string>();
  return (res) => {
    for (const s of res.skipped) {
      const key = `${s.table}:${s.reason}`;
      if (reportedSkips.has(key)) continue;
      reportedSkips.add(key);
      if (s.reason === 'no_primary_key') {
        log.warn(
          { event: 'table_skipped', table: s.table, reason: s.reason },
          `table ${s.table} has no explicit PRIMARY KEY, so its rows cannot be keyed in the cloud: not captured. ` +
            'Add a PRIMARY KEY, or set its strategy to ignore (or telemetry) to silence this.',
        );
      } else
        log.info(
          { event: 'table_skipped', table: s.table, reason: s.reason },
          `table ${s.table}: ${s.reason}`,
        );
    }
    for (const t of res.registered) {
      log.info({ event: 'table_registered', table: t }, `capturing ${t} (new journal_epoch)`);
    }
    for (const [t, n] of Object.entries(res.snapshotted)) {
      log.info(
        { event: 'snapshot', table: t, rows: n },
        `journaled ${n} existing rows of ${t} (snapshot_on_first_run)`,
      );
    }
    for (const t of res.installed)
      log.info({ event: 'triggers_installed', table: t }, `capture triggers installed on ${t}`);
    for (const [t, n] of Object.entries(res.converted)) {
      log.info(
        { event: 'journal_converted', table: t, entries: n },
        `converted ${n} pending change(s) of ${t} from the old JSON journal into its change log (same commit_seq and epoch)`,
      );
    }
  };
}
