import type { Logger } from 'pino';
import type { ControlCounters } from '../control/handler';
import type { LaneCounters } from '../publish/lane';
import type { Backoff } from '../publish/mqtt-link';

export type AgentOptions = Readonly<{
  logger?: Logger;
  backoff?: Backoff;
  /** How often the agent looks at the journal counters and timers (default 100 ms). */
  pollIntervalMs?: number;
  now?: () => number;
  newId?: () => string;
}>;

export type TableStats = Readonly<{
  strategy: 'rows' | 'telemetry';
  paused: boolean;
  inflight: number;
  pending_rows: number;
  journal_epoch?: string;
  confirmed_seq?: number;
  /** An upload of the secondary flow in progress. */
  upload?: Readonly<{ upload_id: string; status: string; rows: number }>;
}>;

export type AgentStats = Readonly<
  LaneCounters & {
    connected: boolean;
    controls: ControlCounters;
    dropped_rows: number;
    tables: Readonly<Record<string, TableStats>>;
  }
>;

export type AgentHandle = Readonly<{
  stop(): Promise<void>;
  /** Build and publish every pending batch now (within each table's window). */
  flushNow(): Promise<void>;
  stats(): AgentStats;
}>;
