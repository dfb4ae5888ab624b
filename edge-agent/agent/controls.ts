import type Database from 'better-sqlite3';
import type { Logger } from 'pino';
import type { Control } from '../../domain/protocol/contracts';
import { resyncTable } from '../capture/install';
import { readTableSchema } from '../capture/schema';
import { applyStateWrite } from '../control/state-write';
import type { StateStore } from '../state/state-store';
import { type AgentLane, rowsLane } from './lanes';

export type ControlContext = Readonly<{
  db: Database.Database;
  state: StateStore;
  log: Logger;
  lanes: ReadonlyMap<string, AgentLane>;
  newId: () => string;
  maxRows: number;
  /** Only with signed controls: an unverified URL could send the rows anywhere. */
  uploadsEnabled: boolean;
  /** Reconcile the capture with the database schema (a control may follow a migration). */
  checkSchema: () => void;
  /** The agent journaled on its own connection (data_version does not see it): count again. */
  journaled: () => void;
}>;

/** What a verified control does to the device; returns the outcome the agent logs and acks. */
export function controlApplier(x: ControlContext): (c: Control) => string {
  return (c) => {
    const lane = x.lanes.get(c.source_table);
    const rows = rowsLane(lane);
    switch (c.control_kind) {
      case 'pause_lineage':
        if (!lane) return 'unknown table';
        lane.pause(c.server_watermark);
        return 'paused';
      case 'resume_lineage':
        if (!lane) return 'unknown table';
        lane.resume(c.server_watermark);
        return 'resumed';
      case 'state_write':
        return rows ? stateWrite(x, c) : 'not a rows table';
      case 'resync': {
        if (!rows) return 'not a rows table';
        x.checkSchema();
        const done = resyncTable(x.db, rows.tid, c.resync_id ?? x.newId(), c.buckets ?? null);
        if (!done) return 'table not registered';
        // A new lineage may start from this resync: it must carry the schema.
        rows.resetAnnounced();
        if (done.rows > x.maxRows)
          rows.markForUpload({ epoch: rows.epoch, throughSeq: done.sweepSeq - 1, reason: 'resync' });
        x.journaled();
        x.log.info(
          {
            event: 'resync',
            table: c.source_table,
            reason: 'control',
            control_id: c.control_id,
            resync_id: done.resyncId,
            buckets: c.buckets ?? null,
            rows: done.rows,
            sweep_seq: done.sweepSeq,
          },
          `resync of ${c.source_table} asked by the cloud: ${done.rows} current row(s) journaled again, then a sweep`,
        );
        return `resync: ${done.rows} rows, sweep at ${done.sweepSeq}`;
      }
      case 'verify': {
        if (!rows) return 'not a rows table';
        if (!c.verify_id || !c.columns) return 'refused: verify without verify_id or columns';
        x.checkSchema();
        rows.requestVerify(c.verify_id, c.columns);
        return 'verify queued: digested when every change of the table is in a batch';
      }
      case 'url_grant': {
        if (!x.uploadsEnabled) {
          x.log.warn(
            { event: 'upload_grant_refused', control_id: c.control_id, table: c.source_table },
            'url_grant refused: the upload flow needs security.signed_control (an unverified URL could send ' +
              'the rows anywhere); the rows go as ordinary batches',
          );
          return 'refused: signed controls are off';
        }
        if (!rows) return 'not a rows table';
        const outcome = rows.onGrant(c);
        x.log.info(
          {
            event: 'url_grant',
            control_id: c.control_id,
            table: c.source_table,
            upload_id: c.upload_id,
            outcome,
          },
          `url_grant for ${c.source_table}: ${outcome}`,
        );
        return outcome;
      }
      default: {
        const never: never = c.control_kind;
        return `unknown ${String(never)}`;
      }
    }
  };
}

/** Cloud rows written into the device's table, each only if newer than what the device holds. */
function stateWrite(x: ControlContext, c: Control): string {
  const schema = readTableSchema(x.db, c.source_table);
  if (!schema || schema.pk.length === 0) return 'table has no key';
  const { applied, stale } = applyStateWrite(x.db, schema, c.rows ?? [], (pk) =>
    x.state.cloudVersions.get(c.source_table, pk),
  );
  x.state.cloudVersions.set(c.source_table, applied);
  // The confirmations were journaled on the agent's own connection, which data_version does not
  // report: read the counters again on the next tick.
  x.journaled();
  x.log.info(
    { event: 'state_write', table: c.source_table, rows: applied.length, stale, control_id: c.control_id },
    `applied ${applied.length} cloud row(s) to ${c.source_table}; they go back as confirmations ` +
      `carrying their cloud_version${stale > 0 ? ` (${stale} older than what this device holds: skipped)` : ''}`,
  );
  return `applied ${applied.length}`;
}
