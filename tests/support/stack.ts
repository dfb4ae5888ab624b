import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, type Managed, startProcess, tempDir } from './proc';
import { waitFor } from './wait';

export const ROOT = join(__dirname, '..', '..');
export const TSX = join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs');
export const TEST_PROJECT = '0190a000-0000-7000-8000-00000000e2e1';
export const TEST_TOKEN = 'sluice-e2e-token-0123456789';
export const READ_TOKEN = 'sluice-e2e-read-token-0123456789';

export type CloudProcess = Managed & { apiUrl: string; base: string; dir: string };

/** `sluice <roles>` as a child process, wired to a test nats-server and read store. */
export async function startCloudProcess(opts: {
  natsUrl: string;
  mqttUrl: string;
  readStore?: string;
  args?: string[];
  env?: Record<string, string>;
}): Promise<CloudProcess> {
  const dir = tempDir('cloud');
  const port = await freePort();
  const child = startProcess(join(ROOT, 'bin', 'sluice'), opts.args ?? ['all'], {
    env: {
      ...process.env,
      SLUICE_NATS_URL: opts.natsUrl,
      SLUICE_MQTT_URL: opts.mqttUrl,
      SLUICE_READ_STORE: opts.readStore ?? `sqlite:${join(dir, 'read.db')}`,
      SLUICE_API_PORT: String(port),
      SLUICE_PROJECT_ID: TEST_PROJECT,
      SLUICE_BRIDGE_CLIENT_ID: `bridge-${port}`,
      SLUICE_API_TOKENS: JSON.stringify([
        {
          token: TEST_TOKEN,
          project_id: TEST_PROJECT,
          permissions: ['PROJECT_CAN_READ_DEVICES', 'PROJECT_CAN_MANAGE_DEVICES'],
          name: 'e2e',
        },
        {
          token: READ_TOKEN,
          project_id: TEST_PROJECT,
          permissions: ['PROJECT_CAN_READ_DEVICES'],
          name: 'e2e-read',
        },
      ]),
      SLUICE_LOG_LEVEL: 'info',
      ...opts.env,
    },
  });
  const apiUrl = `http://127.0.0.1:${port}`;
  await waitFor(
    async () => {
      if (child.child.exitCode !== null) throw new Error(`sluice exited: ${child.output().slice(-2000)}`);
      const r = await fetch(`${apiUrl}/healthz`).catch(() => undefined);
      return r?.ok;
    },
    { timeoutMs: 30_000, message: 'sluice API /healthz' },
  );
  return { ...child, apiUrl, base: `${apiUrl}/core/api/v1/projects/${TEST_PROJECT}/edge`, dir };
}

export type AgentProcess = Managed & { configFile: string; dir: string };

/** `sluice-agent run` as a child process against an application database. */
export function startAgentProcess(opts: {
  mqttUrl: string;
  sourceDb: string;
  device: string;
  slug?: string;
  flushInterval?: string;
  extraYaml?: string;
  dir?: string;
}): AgentProcess {
  const dir = opts.dir ?? tempDir('agent');
  const configFile = join(dir, 'device.yaml');
  writeFileSync(
    configFile,
    [
      'connection:',
      '  transport: mqtt',
      `  server_url: ${JSON.stringify(opts.mqttUrl)}`,
      `  device_id: ${JSON.stringify(opts.device)}`,
      `  root_topic: ${JSON.stringify(`${opts.slug ?? 'e2e'}/${opts.device}`)}`,
      '  mqtt:',
      '    clean_session: false',
      'sqlite-replication:',
      `  source_db_path: ${JSON.stringify(opts.sourceDb)}`,
      `  state_db_path: ${JSON.stringify(join(dir, 'state.db'))}`,
      `  flush_interval: ${opts.flushInterval ?? '200ms'}`,
      opts.extraYaml ?? '',
    ].join('\n'),
  );
  const child = startProcess(join(ROOT, 'bin', 'sluice-agent'), ['run', '--config', configFile], {
    env: { ...process.env },
  });
  return { ...child, configFile, dir };
}

export async function getJson<T = unknown>(
  url: string,
  token = TEST_TOKEN,
): Promise<{ status: number; body: T }> {
  const r = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  return { status: r.status, body: (await r.json()) as T };
}

export async function postJson<T = unknown>(
  url: string,
  body: unknown,
  opts: { token?: string; idempotencyKey?: string; method?: string } = {},
): Promise<{ status: number; body: T }> {
  const r = await fetch(url, {
    method: opts.method ?? 'POST',
    headers: {
      authorization: `Bearer ${opts.token ?? TEST_TOKEN}`,
      'content-type': 'application/json',
      'idempotency-key': opts.idempotencyKey ?? `k-${Date.now()}-${Math.random()}`,
    },
    body: JSON.stringify(body),
  });
  return { status: r.status, body: (await r.json()) as T };
}
