/**
 * The lineage decider: every command a lineage takes, and the module that holds its rule.
 * Commands carry every id, time and policy the decision needs: the decider itself is pure.
 * Where each rule lives, by term: docs/architecture.md.
 */
import { assertNever } from '../shared/decider';
import { requireRows } from './common';
import { decideControlAck, decideControlDelivery } from './controls';
import type { LineageEvent, LineageAuthority } from './events';
import { type ApplyRegistryApprovalData, decideRegistryApproval } from './governance';
import { type IngestRowBatchData, decideRowBatch } from './intake';
import { decideAssignFleet, decideDelete } from './lifecycle';
import {
  type CompleteReplayData,
  type ReportMaterializationFailureData,
  type ResetMaterializationData,
  decideCompleteReplay,
  decideFailure,
  decideReset,
} from './materialization';
import { type ObserveSchemaData, decideObserveSchema } from './observe';
import { type RequestResyncData, decideRequestResync } from './resync';
import { type ApproveReviewData, decideApprove, decideClaim, decideReject, decideReopen } from './reviews';
import { type LineageState, evolve } from './state';
import { type IngestTelemetryBatchData, decideTelemetryBatch, withDataPoints } from './telemetry';
import {
  type CompleteUploadData,
  type FailUploadData,
  type IngestUploadChunkData,
  type RequestUploadData,
  decideCompleteUpload,
  decideFailUpload,
  decideRequestUpload,
  decideUploadChunk,
} from './uploads';
import {
  type CompleteVerifyData,
  type ReportVerifyData,
  type RequestVerifyData,
  decideCompleteVerify,
  decideReportVerify,
  decideRequestVerify,
} from './verify';
import { type WriteCloudRowsData, decideAuthority, decideWrite } from './write-back';

type ReviewRef = { review_id: string; action_version: number };

export type LineageCommand =
  // intake.ts, telemetry.ts
  | Readonly<{ type: 'IngestRowBatch'; data: IngestRowBatchData }>
  | Readonly<{ type: 'IngestTelemetryBatch'; data: IngestTelemetryBatchData }>
  // reviews.ts (a lineage's own review), governance.ts (a registry entry's approval)
  | Readonly<{ type: 'ClaimReview'; data: ReviewRef }>
  | Readonly<{ type: 'ApproveReview'; data: ApproveReviewData }>
  | Readonly<{ type: 'RejectReview'; data: ReviewRef & { reason: string } }>
  | Readonly<{ type: 'ReopenReview'; data: ReviewRef }>
  | Readonly<{ type: 'ApplyRegistryApproval'; data: ApplyRegistryApprovalData }>
  // verify.ts, resync.ts
  | Readonly<{ type: 'RequestVerify'; data: RequestVerifyData }>
  | Readonly<{ type: 'ReportVerify'; data: ReportVerifyData }>
  | Readonly<{ type: 'CompleteVerify'; data: CompleteVerifyData }>
  | Readonly<{ type: 'RequestResync'; data: RequestResyncData }>
  // materialization.ts
  | Readonly<{ type: 'CompleteReplay'; data: CompleteReplayData }>
  | Readonly<{ type: 'ReportMaterializationFailure'; data: ReportMaterializationFailureData }>
  | Readonly<{ type: 'ResetMaterialization'; data: ResetMaterializationData }>
  // controls.ts
  | Readonly<{ type: 'RecordControlDelivery'; data: { control_id: string; delivered_at: string } }>
  | Readonly<{ type: 'AcknowledgeControl'; data: { control_id: string; acknowledged_at: string } }>
  // lifecycle.ts
  | Readonly<{ type: 'DeleteLineage'; data: { reason: string } }>
  | Readonly<{ type: 'AssignFleet'; data: { fleet_id: string | null } }>
  // write-back.ts
  | Readonly<{ type: 'SetLineageAuthority'; data: { authority: LineageAuthority } }>
  | Readonly<{ type: 'WriteCloudRows'; data: WriteCloudRowsData }>
  // uploads.ts
  | Readonly<{ type: 'RequestUpload'; data: RequestUploadData }>
  | Readonly<{ type: 'IngestUploadChunk'; data: IngestUploadChunkData }>
  | Readonly<{ type: 'CompleteUpload'; data: CompleteUploadData }>
  | Readonly<{ type: 'FailUpload'; data: FailUploadData }>
  // observe.ts
  | Readonly<{ type: 'ObserveSchema'; data: ObserveSchemaData }>;

export type LineageCommandType = LineageCommand['type'];
export type { RegistryApproval } from './governance';
export { bindSchema } from './bindings';
export { MAX_PENDING_STATE_WRITES, MAX_WRITE_ROWS } from './write-back';

export function decide(command: LineageCommand, state: LineageState): readonly LineageEvent[] {
  switch (command.type) {
    case 'IngestRowBatch':
      return decideRowBatch(state, command.data);
    case 'IngestTelemetryBatch':
      return decideTelemetryBatch(state, command.data);
    case 'ClaimReview':
      return decideClaim(state, command.data);
    case 'ApproveReview':
      return withDataPoints(state, decideApprove(state, command.data), command.data);
    case 'RejectReview':
      return decideReject(state, command.data);
    case 'ReopenReview':
      return decideReopen(state, command.data);
    case 'ApplyRegistryApproval':
      return withDataPoints(state, decideRegistryApproval(state, command.data), command.data);
    case 'RequestVerify':
      return decideRequestVerify(state, command.data);
    case 'ReportVerify':
      return decideReportVerify(state, command.data);
    case 'CompleteVerify':
      return decideCompleteVerify(state, command.data);
    case 'RequestResync':
      return decideRequestResync(state, command.data);
    case 'CompleteReplay':
      return decideCompleteReplay(state, command.data);
    case 'ReportMaterializationFailure':
      return decideFailure(state, command.data);
    case 'ResetMaterialization':
      return decideReset(state, command.data);
    case 'RecordControlDelivery':
      return decideControlDelivery(state, command.data);
    case 'AcknowledgeControl':
      return decideControlAck(state, command.data);
    case 'DeleteLineage':
      return decideDelete(state, command.data);
    case 'AssignFleet':
      return decideAssignFleet(state, command.data);
    case 'SetLineageAuthority':
      return decideAuthority(
        requireRows(state, 'illegal_transition', 'it has no rows the cloud could own'),
        command.data.authority,
      );
    case 'WriteCloudRows':
      return decideWrite(
        requireRows(state, 'illegal_transition', 'it has no rows to write back'),
        command.data,
      );
    case 'RequestUpload':
      return decideRequestUpload(state, command.data);
    case 'IngestUploadChunk':
      return decideUploadChunk(state, command.data);
    case 'CompleteUpload':
      return decideCompleteUpload(state, command.data);
    case 'FailUpload':
      return decideFailUpload(state, command.data);
    case 'ObserveSchema':
      return decideObserveSchema(state, command.data);
    default:
      return assertNever(command, 'lineage command');
  }
}

export const lineageDecider = {
  decide,
  evolve,
  initialState: (): LineageState => ({ status: 'unregistered' }),
};
