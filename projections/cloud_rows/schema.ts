/** The `cloud_rows` projection's table (SPEC §7 write-back): the cloud's row of every written key. */
export interface EdgeCloudRowsTable {
  lineage_id: string;
  /** Canonical JSON of the pk: how the domain and the agent key a cloud row. */
  pk_key: string;
  /** JSON of the wire pk. */
  pk: string;
  /** JSON of every value written to the key so far (later writes merge into earlier ones). */
  row_values: string;
  cloud_version: number;
  /** The state_write that last carried the key's current version. */
  control_id: string | null;
  written_at: string;
  /** The highest lkcv the device reported for the key: it has applied that version. */
  device_version: number | null;
  confirmed_at: string | null;
  /** Device changes of the key that lost to the cloud row (StateWriteConflictDetected). */
  conflicts: number;
  last_conflict_at: string | null;
}

/** Per lineage: who wins (LineageAuthoritySet) and the last cloud_version written. */
export interface EdgeCloudLineagesTable {
  lineage_id: string;
  authority: 'cloud_authoritative' | 'device_authoritative';
  last_cloud_version: number;
  updated_at: string;
}

export type CloudRowsTables = {
  edge_cloud_rows: EdgeCloudRowsTable;
  edge_cloud_lineages: EdgeCloudLineagesTable;
};
