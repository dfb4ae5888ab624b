import Database from 'better-sqlite3';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type AgentConfig, loadAgentConfig } from '../config/load';
import { DEMO_SCHEMA } from '../demo/schema';

export { DEMO_SCHEMA };

/** An application database in WAL mode, as a real device app would keep it. */
export function createAppDb(path: string, schema = DEMO_SCHEMA): Database.Database {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 10000');
  db.exec(schema);
  return db;
}

export type TestConfigInput = Readonly<{
  dir: string;
  serverUrl: string;
  deviceId?: string;
  slug?: string;
  sourceDb: string;
  extraReplication?: string;
  security?: string;
}>;

/** Write a device.yaml like an operator would, and load it through the real loader. */
export function writeTestConfig(input: TestConfigInput): { path: string; config: AgentConfig; root: string } {
  const deviceId = input.deviceId ?? 'dev-1';
  const root = `${input.slug ?? 'acme'}/${deviceId}`;
  const yaml = `
connection:
  transport: mqtt
  server_url: ${JSON.stringify(input.serverUrl)}
  device_id: ${JSON.stringify(deviceId)}
  root_topic: ${JSON.stringify(root)}
  mqtt:
    clean_session: false
sqlite-replication:
  source_db_path: ${JSON.stringify(input.sourceDb)}
  state_db_path: ${JSON.stringify(join(input.dir, 'state.db'))}
  flush_interval: 100ms
  receipt_timeout: 1s
${(input.extraReplication ?? '')
  .split('\n')
  .filter((l) => l.trim())
  .map((l) => `  ${l}`)
  .join('\n')}
${input.security ?? ''}
`;
  const path = join(input.dir, 'device.yaml');
  writeFileSync(path, yaml);
  const res = loadAgentConfig(path, {});
  if (!res.ok)
    throw new Error(`test config invalid: ${res.problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`);
  return { path, config: res.config, root };
}
