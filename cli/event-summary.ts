/** One line per lineage event for `sluice audit replay`: what the decision did, in words. */
type Data = Record<string, unknown>;

const short = (v: unknown, n = 8) => (typeof v === 'string' ? v.slice(0, n) : String(v));
const rows = (d: Data) => (Array.isArray(d.rows) ? d.rows : []);

function seqRange(d: Data): string {
  const seqs = rows(d)
    .map((r) => (r as { commit_seq?: unknown }).commit_seq)
    .filter((s): s is number => typeof s === 'number');
  if (seqs.length === 0) return '';
  const lo = Math.min(...seqs);
  const hi = Math.max(...seqs);
  return lo === hi ? ` commit_seq ${lo}` : ` commit_seq ${lo}–${hi}`;
}

const dupes = (d: Data) =>
  typeof d.duplicates_skipped === 'number' && d.duplicates_skipped > 0
    ? `, ${d.duplicates_skipped} duplicates skipped`
    : '';

function bindings(d: Data): string {
  const b = Array.isArray(d.bindings) ? (d.bindings as Data[]) : [];
  return b
    .map((x) =>
      x.action === 'mirror' && x.target && x.target !== x.column
        ? `${String(x.column)}→${String(x.target)}`
        : x.action === 'mirror'
          ? String(x.column)
          : `${String(x.column)}:${String(x.action)}`,
    )
    .join(', ');
}

export function summarizeEvent(type: string, data: unknown): string {
  const d = (typeof data === 'object' && data !== null ? data : {}) as Data;
  switch (type) {
    case 'LineageRegistered':
      return `${String(d.device_name)} / ${String(d.source_table)} (${String(d.kind)})`;
    case 'SchemaVersionObserved':
      return `schema ${short(d.schema_hash, 12)} ${String(d.classification)}`;
    case 'SchemaReviewQueued':
      return `review ${String(d.review_id)} queued (${String(d.classification)}, v${String(d.action_version)})`;
    case 'SchemaReviewClaimed':
      return `review ${String(d.review_id)} claimed (v${String(d.action_version)})`;
    case 'SchemaReviewApproved':
      return `review ${String(d.review_id)} approved (v${String(d.action_version)}): ${bindings(d)}${
        d.auto_approved_by ? ` [auto: ${String(d.auto_approved_by)}]` : ''
      }`;
    case 'SchemaReviewRejected':
      return `review ${String(d.review_id)} rejected (v${String(d.action_version)}): ${String(d.reason ?? '')}`;
    case 'LineagePaused':
      return `paused: ${String(d.reason)}${d.detail ? ` (${String(d.detail)})` : ''}`;
    case 'LineageResumed':
      return `resumed: ${String(d.reason)} cleared`;
    case 'RowsStaged':
      return `${rows(d).length} rows staged (${String(d.reason)})${seqRange(d)}${dupes(d)}`;
    case 'RowsAccepted':
      return `${rows(d).length} rows accepted${seqRange(d)}${dupes(d)}`;
    case 'TelemetryStaged':
      return `${rows(d).length} telemetry rows staged (${String(d.reason)}), batch_seq ${String(d.batch_seq)}`;
    case 'TelemetryAccepted':
      return `${rows(d).length} telemetry rows accepted, batch_seq ${String(d.batch_seq)}`;
    case 'StagedRowsReleased':
      return `staged rows released for replay ${String(d.replay_id)}`;
    case 'ReplayCompleted':
      return `replay ${String(d.replay_id)} completed: ${String(d.rows)} rows`;
    case 'ControlIssued':
      return `${String(d.control_kind)} ${short(d.control_id)}… watermark ${String(d.server_watermark)}: ${String(d.reason)}`;
    case 'ControlDelivered':
      return `control ${short(d.control_id)}… delivered (attempt ${String(d.attempt)})`;
    case 'ControlAcknowledged':
      return `control ${short(d.control_id)}… acknowledged`;
    case 'MaterializationFailed':
      return `${String(d.code)}: ${String(d.message)} (${rows(d).length} rows staged, ${String(
        d.consecutive_failures,
      )} in a row${d.permanent ? ', permanent' : ''})`;
    case 'MaterializationReset':
      return `failure count reset (was ${String(d.previous_failures)})`;
    case 'LineageDeleted':
      return `deleted: ${String(d.reason)}`;
    case 'LineageAuthoritySet':
      return `now ${String(d.authority)} (was ${String(d.previous)})`;
    case 'CloudRowsWritten':
      return `${rows(d).length} cloud rows written as cloud_version ${String(d.cloud_version)}`;
    case 'StateWriteConflictDetected': {
      const conflicts = Array.isArray(d.conflicts) ? (d.conflicts as Data[]) : [];
      const seqs = conflicts.map((c) => String(c.commit_seq)).join(', ');
      return `${conflicts.length} device change(s) lost to the cloud row (commit_seq ${seqs}); ${String(d.reissued)} key(s) sent again`;
    }
    case 'RegistryReviewAwaited':
      return `schema ${short(d.schema_hash, 12)} waits for registry entry ${short(d.registry_id, 12)} (${String(d.scope)} ${String(d.scope_id)})`;
    case 'SchemaApprovedByRegistry':
      return `approved by registry entry ${short(d.registry_id, 12)}${d.review_id ? ` (review ${String(d.review_id)})` : ''}, coalesced in ${String(d.scope)} ${String(d.scope_id)}: ${bindings(d)}`;
    case 'LineageFleetAssigned':
      return d.fleet_id ? `device in fleet ${String(d.fleet_id)}` : 'device in no fleet';
    default:
      return JSON.stringify(d);
  }
}
