/**
 * Resync (docs/exact-replication.md, "Resync"): the cloud asks the device to send the table, or
 * some key buckets of it, again — for an operator, for a verify that found divergent buckets, or
 * for a lineage that knows a schema hash without its columns (re-enrolment).
 */
import { requireRows } from './common';
import type { LineageEvent } from './events';
import type { LineageState, RowsLineage } from './state';

export type RequestResyncData = {
  resync_id: string;
  control_id: string;
  now: string;
  buckets: readonly number[] | null;
};

/** A resync control and its event. */
export function resyncEvents(
  s: RowsLineage,
  reason: 're_enrolment' | 'verify_repair' | 'operator',
  buckets: readonly number[] | null,
  ids: Readonly<{ resync_id: string; control_id: string; now: string }>,
): LineageEvent[] {
  const what = buckets === null ? 'the whole table' : `${buckets.length} key bucket(s)`;
  return [
    {
      type: 'ResyncRequested',
      data: { resync_id: ids.resync_id, control_id: ids.control_id, buckets, reason },
    },
    {
      type: 'ControlIssued',
      data: {
        control_id: ids.control_id,
        control_kind: 'resync',
        source_table: s.source_table,
        server_watermark: s.last_commit_seq,
        reason: `resync of ${what} (${reason})`,
        issued_at: ids.now,
        resync_id: ids.resync_id,
        buckets,
      },
    },
  ];
}

/**
 * A lineage that knows a schema hash without its columns (it started from a batch that did not
 * carry them: the device enrolled with an earlier lineage, deleted since) can never bind them, so
 * its review could never be approved. The cloud asks the device for its schema and its table
 * once, with a resync control; the columns arrive with the re-sent rows. Registry-governed
 * lineages get the columns from the registry entry instead.
 */
export function reEnrolment(
  s: RowsLineage,
  hash: string,
  cmd: Readonly<{ new_resync_id?: string; new_resync_control_id?: string; now: string }>,
): LineageEvent[] {
  if (cmd.new_resync_id === undefined || cmd.new_resync_control_id === undefined) return [];
  if (s.schemas[hash] || s.approved_hash === hash) return [];
  if (s.schema_resync || s.coalesced || s.awaiting[hash] !== undefined) return [];
  return resyncEvents(s, 're_enrolment', null, {
    resync_id: cmd.new_resync_id,
    control_id: cmd.new_resync_control_id,
    now: cmd.now,
  });
}

export function decideRequestResync(state: LineageState, d: RequestResyncData): LineageEvent[] {
  const s = requireRows(state, 'resync_unavailable', 'only row lineages resync');
  const buckets = d.buckets === null ? null : [...new Set(d.buckets)].sort((a, b) => a - b);
  return resyncEvents(s, 'operator', buckets, {
    resync_id: d.resync_id,
    control_id: d.control_id,
    now: d.now,
  });
}
