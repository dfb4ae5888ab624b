import type { Logger } from 'pino';
import type { SchemaObserve } from '../../domain/protocol/contracts';
import type { SchemaColumns } from '../../domain/protocol/fingerprint';
import type { StateStore } from '../state/state-store';
import type { StepFailed } from './lane';

export type ObserverDeps = Readonly<{
  state: StateStore;
  log: Logger;
  /** `{root}/sync/schema/observe`. */
  topic: string;
  sender: Readonly<{ connected: () => boolean; publish: (topic: string, payload: string) => Promise<void> }>;
  failed: StepFailed;
}>;

/**
 * `sync/schema/observe`: one observation when a table is first captured and whenever the schema
 * it is sent under (the filtered one: docs/agent.md, "Filters") changes. The schema hash in
 * state.db moves only once the observation is published (PUBACK), so an observation lost to a
 * restart or an outage is sent again. Advisory: batches carry their schema_hash (and
 * schema_columns after a change) whether or not an observation got through.
 */
export class SchemaObserver {
  private readonly pending = new Map<string, { hash: string; payload: string }>();
  private readonly sending = new Set<string>();

  constructor(private readonly d: ObserverDeps) {}

  note(table: string, strategy: 'rows' | 'telemetry', hash: string, fingerprint: SchemaColumns): void {
    const st = this.d.state.tables.get(table);
    if (!st || st.schemaHash === hash) {
      this.pending.delete(table);
      return;
    }
    if (this.pending.get(table)?.hash === hash) return;
    if (st.schemaHash !== null) {
      this.d.log.warn(
        { event: 'schema_drift', table, old_hash: st.schemaHash, schema_hash: hash },
        `schema of ${table} changed; an observation goes to the cloud and schema_columns go with its next batch`,
      );
    }
    const body: SchemaObserve = {
      format_version: 1,
      source_table: table,
      schema_hash: hash,
      schema_columns: fingerprint,
      capture_strategy: strategy === 'rows' ? 'sqlite_row_batch_v1' : 'sqlite_telemetry_batch_v1',
    };
    this.pending.set(table, { hash, payload: JSON.stringify(body) });
    this.pump();
  }

  pump(): void {
    if (!this.d.sender.connected()) return;
    for (const [table, p] of this.pending) {
      if (this.sending.has(table)) continue;
      this.sending.add(table);
      this.d.sender
        .publish(this.d.topic, p.payload)
        .then(
          () => {
            this.sending.delete(table);
            if (this.pending.get(table)?.hash === p.hash) this.pending.delete(table);
            this.d.state.tables.setSchemaHash(table, p.hash);
            this.d.log.info(
              { event: 'schema_observe', table, schema_hash: p.hash },
              'schema observation published',
            );
          },
          (err: Error) => {
            this.sending.delete(table);
            this.d.log.warn({ event: 'publish_failed', table, what: 'schema_observe', err: err.message });
          },
        )
        .catch((err: unknown) =>
          this.d.failed(err, 'observe_failed', 'recording a schema observation failed; it is sent again'),
        );
    }
  }
}
