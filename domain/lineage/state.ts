/**
 * A lineage's state: the fold of its events. The shape and its queries are in state-types.ts;
 * each event folds in the module of its concern.
 */
import { assertNever } from '../shared/decider';
import { evolveDevice } from './evolve-device';
import { evolveGovernance } from './evolve-governance';
import { evolveRows } from './evolve-rows';
import type { LineageEvent } from './events';
import type { LineageState } from './state-types';

export * from './state-types';

export function evolve(state: LineageState, event: LineageEvent): LineageState {
  if (event.type === 'LineageRegistered') {
    const d = event.data;
    return {
      status: 'registered',
      lineage_id: d.lineage_id,
      project_id: d.project_id,
      device_id: d.device_id,
      device_name: d.device_name,
      source_table: d.source_table,
      kind: d.kind,
      pause_reasons: [],
      schemas: {},
      classifications: {},
      approved_hash: null,
      bindings: [],
      reviews: [],
      accepted: {},
      last_batch_seq: 0,
      recent_batches: [],
      last_epoch: null,
      last_commit_seq: 0,
      staged_rows: 0,
      staged_bytes: 0,
      replaying_rows: 0,
      replaying_bytes: 0,
      materialized_rows: 0,
      replay: null,
      consecutive_failures: 0,
      reported_failures: [],
      controls: [],
      device_paused: false,
      topic_slug: d.topic_slug ?? null,
      awaiting: {},
      coalesced: null,
      fleet_id: null,
    };
  }
  if (state.status !== 'registered') return state;
  switch (event.type) {
    case 'SchemaVersionObserved':
    case 'SchemaObserved':
    case 'SchemaReviewQueued':
    case 'SchemaReviewClaimed':
    case 'SchemaReviewApproved':
    case 'SchemaReviewRejected':
    case 'SchemaReviewReopened':
    case 'SchemaVersionAdopted':
    case 'RegistryReviewAwaited':
    case 'SchemaApprovedByRegistry':
    case 'DataPointsCreated':
    case 'LineagePaused':
    case 'LineageResumed':
    case 'LineageFleetAssigned':
    case 'LineageDeleted':
      return evolveGovernance(state, event);
    case 'RowsStaged':
    case 'RowsAccepted':
    case 'TelemetryStaged':
    case 'TelemetryAccepted':
    case 'RowsRefused':
    case 'StateWriteConflictDetected':
    case 'StagedRowsReleased':
    case 'ReplayCompleted':
    case 'MaterializationFailed':
    case 'MaterializationReset':
      return evolveRows(state, event);
    case 'ControlIssued':
    case 'ControlDelivered':
    case 'ControlAcknowledged':
    case 'LineageAuthoritySet':
    case 'CloudRowsWritten':
    case 'UploadGranted':
    case 'UploadChunkAppended':
    case 'UploadCompleted':
    case 'UploadFailed':
    case 'VerifyRequested':
    case 'VerifyReported':
    case 'VerifyCompleted':
    case 'ResyncRequested':
      return evolveDevice(state, event);
    default:
      return assertNever(event, 'lineage event');
  }
}
