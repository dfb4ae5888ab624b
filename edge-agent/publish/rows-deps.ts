import type { Journal } from '../capture/journal';
import type { StateStore } from '../state/state-store';
import type { Inflight, LaneDeps } from './lane';
import type { PutFn } from './upload';

/** A rows batch in flight: the journal range it carries. */
export type RowsInflight = Inflight & { firstSeq: number; lastSeq: number };

export type RowsLaneDeps = LaneDeps &
  Readonly<{
    journal: Journal;
    state: StateStore;
    newId: () => string;
    maxRows: number;
    maxBytes: number;
    /** sync/ingest/request of this device (verify reports). */
    uploadsTopic?: string;
    /** The secondary upload flow (only with signed controls: a url_grant must be verifiable). */
    uploads?: Readonly<{
      requestTopic: string;
      /**
       * Journal a resync of the table (after a gap): the last seq of its rows (the upload goes
       * through there; the sweep after it travels as a batch) and the sweep's seq.
       */
      resync: (tid: number) => { through: number; sweepSeq: number } | undefined;
      put?: PutFn;
    }>;
  }>;
