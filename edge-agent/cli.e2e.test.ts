import { execFile } from 'node:child_process';
import { symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { startNats, type NatsServer } from '../tests/support/nats';
import { startProcess, tempDir } from '../tests/support/proc';
import { waitFor } from '../tests/support/wait';
import { runDemoApp } from './demo/demo-app';
import { FakeCloud } from './testing/fake-cloud';

const REPO = resolve(__dirname, '..');
const BIN = join(REPO, 'bin/sluice-agent');
const DEMO_CONFIG = join(REPO, 'edge-agent/demo/device.yaml');

async function cli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; bin?: string } = {}) {
  try {
    const r = await promisify(execFile)(opts.bin ?? BIN, args, {
      cwd: opts.cwd ?? tempDir('cli'),
      env: opts.env ?? process.env,
    });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: e.stdout + e.stderr };
  }
}

describe('sluice-agent CLI', () => {
  let nats: NatsServer;
  beforeAll(async () => {
    nats = await startNats();
  });
  afterAll(async () => {
    await nats?.stop();
  });

  it('validate prints every problem with its path and exits 1', async () => {
    const dir = tempDir('cli');
    const file = join(dir, 'bad.yaml');
    writeFileSync(
      file,
      'connection:\n  server_url_env: NOT_SET_ANYWHERE\n  device_id: gw\n  root_topic: x/gw\nsqlite-replication:\n  source_db_path: a.db\n  flush_interval: soon\n',
    );
    const r = await cli(['validate', '--config', file], { cwd: dir });
    expect(r.code).toBe(1);
    expect(r.out).toContain('error: sqlite-replication.flush_interval: expected a duration like 5s');
    expect(r.out).toContain(
      'error: connection.server_url_env: environment variable NOT_SET_ANYWHERE is not set',
    );
  });

  it('validate accepts the demo config (from any directory, through a symlinked launcher)', async () => {
    const link = join(tempDir('bin'), 'sluice-agent');
    symlinkSync(BIN, link);
    const r = await cli(['validate', '--config', DEMO_CONFIG], {
      bin: link,
      env: { ...process.env, SLUICE_MQTT_URL: nats.mqttUrl },
    });
    expect(r.out).toContain('OK (device demo-gw-01, root demo/demo-gw-01)');
    expect(r.code).toBe(0);
  });

  it('run refuses a missing source database with an operator-readable message', async () => {
    const r = await cli(['run', '--config', DEMO_CONFIG], {
      env: { ...process.env, SLUICE_MQTT_URL: nats.mqttUrl },
    });
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/source database .*app\.db does not exist/);
  });

  it('runs the demo device end to end: demo app + agent → cloud', async () => {
    const cwd = tempDir('demo');
    const app = runDemoApp(join(cwd, '.data/demo/app.db'), { intervalMs: 20 });
    const cloud = await FakeCloud.connect(nats.mqttUrl);
    const agent = startProcess(BIN, ['run', '--config', DEMO_CONFIG], {
      cwd,
      env: { ...process.env, SLUICE_MQTT_URL: nats.mqttUrl, SLUICE_LOG_LEVEL: 'info' },
    });
    try {
      await waitFor(
        () => cloud.distinctCount('device_state') > 5 && cloud.distinctCount('order_events') > 5,
        {
          timeoutMs: 20_000,
          message: 'demo rows at the cloud',
        },
      );
      expect(cloud.rowBatches[0]!.source_table).toMatch(/device_state|order_events/);
      expect(cloud.invalid).toEqual([]);
      const events = () =>
        agent
          .output()
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => (JSON.parse(l) as { event?: string }).event);
      await waitFor(() => events().includes('confirm'), { message: 'a confirm line in the log' });
      expect(events()).toEqual(expect.arrayContaining(['started', 'mqtt_connected', 'publish', 'snapshot']));
      expect(agent.output()).not.toMatch(/"level":(50|60)/); // no error lines
    } finally {
      await agent.stop();
      app.stop();
      await cloud.close();
    }
    expect(agent.output()).toContain('"event":"stopped"');
  });
});
