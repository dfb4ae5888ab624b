import type { RowsLane } from '../publish/rows-lane';
import type { TelemetryLane } from '../publish/telemetry-lane';
import type { TableStats } from './types';

/** A captured table's lane: the two kinds differ in what they hold, told apart by `kind`. */
export type AgentLane = RowsLane | TelemetryLane;

/** The lane of a table when it replicates rows. */
export function rowsLane(lane: AgentLane | undefined): RowsLane | undefined {
  return lane?.kind === 'rows' ? lane : undefined;
}

export function tableStats(lane: AgentLane): TableStats {
  const base = {
    strategy: lane.kind,
    paused: lane.paused,
    inflight: lane.inflight.length,
    pending_rows: lane.pendingRows(),
  };
  if (lane.kind === 'telemetry') return base;
  const upload = lane.uploadStats();
  return {
    ...base,
    journal_epoch: lane.epoch,
    confirmed_seq: lane.confirmedSeq,
    ...(upload ? { upload } : {}),
  };
}
