/**
 * Device table schemas the suites share, as the agent reports them (`schema_columns`). A test
 * that needs another shape of table writes its own.
 */
import type { SchemaColumns } from '../../domain/protocol/fingerprint';

/** `device_state (id INTEGER PRIMARY KEY, mode TEXT)`: the table most suites replicate. */
export const DEVICE_STATE: SchemaColumns = {
  table_name: 'device_state',
  columns: [
    { name: 'id', decl_type_affinity: 'INTEGER', pk_ordinal: 1, not_null: true },
    { name: 'mode', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: false },
  ],
};

/** DEVICE_STATE with a REAL column: `setpoint`. */
export const DEVICE_STATE_SETPOINT: SchemaColumns = {
  table_name: 'device_state',
  columns: [
    ...DEVICE_STATE.columns,
    { name: 'setpoint', decl_type_affinity: 'REAL', pk_ordinal: 0, not_null: false },
  ],
};

/** `temps (ts TEXT NOT NULL, value_c REAL)`: a telemetry table, no key. */
export const TEMPS: SchemaColumns = {
  table_name: 'temps',
  columns: [
    { name: 'ts', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: true },
    { name: 'value_c', decl_type_affinity: 'REAL', pk_ordinal: 0, not_null: false },
  ],
};
