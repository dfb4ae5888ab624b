import Database from 'better-sqlite3';
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { emptyStore, issueDevice, issueService } from '../../infra/security/credentials';
import { type Managed, startProcess, tempDir } from '../support/proc';
import { shutdown, waitForTriggers } from '../support/readside';
import { type SecureBroker, startSecureNats } from '../support/secure-brokers';
import {
  type CloudProcess,
  READ_TOKEN,
  ROOT,
  TEST_TOKEN,
  getJson,
  postJson,
  startCloudProcess,
} from '../support/stack';
import { waitFor } from '../support/wait';

/**
 * Secrets never reach a log. The whole stack runs at log level `trace` on the shipped NATS config
 * with real credentials: the cloud roles' NATS password, the bridge's MQTT password, API tokens,
 * the control signing key (PEM), and a device's MQTT password; they are used (a control is signed,
 * verified and ACKed; tokens are accepted and refused; a device connects with a wrong password),
 * and then every line either process printed is searched for each secret.
 */
describe('secrets in logs', () => {
  let broker: SecureBroker | undefined;
  let cloud: CloudProcess | undefined;
  let agent: Managed | undefined;
  let intruder: Managed | undefined;
  let app: Database.Database | undefined;
  afterAll(async () => {
    await shutdown(intruder);
    await shutdown(agent);
    await shutdown(cloud);
    app?.close();
    await broker?.stop();
  });

  it('prints no password, token or private key of any role or the agent, while using them all', async () => {
    let store = emptyStore();
    const device = issueDevice(store, 'e2e/gw-secret', { bcryptCost: 4 });
    const bridge = issueService(device.store, 'bridge', { bcryptCost: 4 });
    const natsUser = issueService(bridge.store, 'cloud', { bcryptCost: 4 });
    store = natsUser.store;
    broker = await startSecureNats(store);

    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const signingPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const wrongToken = 'sluice-typo-token-9f8e7d6c5b4a';
    const wrongPassword = 'wrong-device-password-5f4e3d2c1b';
    cloud = await startCloudProcess({
      natsUrl: broker.natsUrl!,
      mqttUrl: broker.mqttUrl,
      env: {
        SLUICE_NATS_USER: natsUser.username,
        SLUICE_NATS_PASSWORD: natsUser.password,
        SLUICE_MQTT_USERNAME: bridge.username,
        SLUICE_MQTT_PASSWORD: bridge.password,
        SLUICE_CONTROL_SIGNING_KEY: signingPem,
        SLUICE_LOG_LEVEL: 'trace',
      },
    });
    // A tiny staged-row cap: the device's first rows wait for review, pass it, and the cloud
    // sends a signed pause_lineage.
    expect(
      (await postJson(`${cloud.base}/policy`, { max_pending_rows_per_lineage: 5 }, { method: 'PATCH' }))
        .status,
    ).toBe(200);

    const dir = tempDir('secrets');
    app = new Database(join(dir, 'app.db'));
    app.pragma('journal_mode = WAL');
    app.pragma('busy_timeout = 5000');
    app.exec('CREATE TABLE readings (id INTEGER PRIMARY KEY, v REAL NOT NULL)');
    const yaml = (stateDb: string) =>
      [
        'connection:',
        '  transport: mqtt',
        `  server_url: ${JSON.stringify(broker!.mqttUrl)}`,
        '  device_id: gw-secret',
        '  root_topic: e2e/gw-secret',
        '  mqtt:',
        '    clean_session: false',
        '    username_env: TEST_MQTT_USER',
        '    password_env: TEST_MQTT_PASSWORD',
        'sqlite-replication:',
        `  source_db_path: ${JSON.stringify(join(dir, 'app.db'))}`,
        `  state_db_path: ${JSON.stringify(join(dir, stateDb))}`,
        '  flush_interval: 200ms',
        'security:',
        '  signed_control:',
        '    enabled: true',
        `    public_key: ${JSON.stringify(publicKey.export({ type: 'spki', format: 'pem' }).toString())}`,
        '',
      ].join('\n');
    writeFileSync(join(dir, 'device.yaml'), yaml('state.db'));
    writeFileSync(join(dir, 'intruder.yaml'), yaml('intruder-state.db'));
    const agentEnv = (password: string) => ({
      ...process.env,
      SLUICE_LOG_LEVEL: 'trace',
      TEST_MQTT_USER: device.username,
      TEST_MQTT_PASSWORD: password,
    });
    agent = startProcess(join(ROOT, 'bin', 'sluice-agent'), ['run', '--config', join(dir, 'device.yaml')], {
      env: agentEnv(device.password),
    });
    await waitForTriggers(app, 'readings');
    const ins = app.prepare('INSERT INTO readings (v) VALUES (?)');
    for (let i = 0; i < 20; i++) ins.run(i);
    await waitFor(() => agent!.output().includes('"event":"control_acked"'), {
      message: 'a signed control verified and ACKed by the agent',
      timeoutMs: 60_000,
    });

    // Tokens: accepted, refused for a mutation, and a wrong one refused.
    expect((await getJson(`${cloud.base}/lineages`)).status).toBe(200);
    expect(
      (
        await postJson(
          `${cloud.base}/policy`,
          { max_pending_rows_per_lineage: 6 },
          { token: READ_TOKEN, method: 'PATCH' },
        )
      ).status,
    ).toBe(403);
    expect((await getJson(`${cloud.base}/lineages`, wrongToken)).status).toBe(401);
    // A device with a wrong password, refused by the broker.
    intruder = startProcess(
      join(ROOT, 'bin', 'sluice-agent'),
      ['run', '--config', join(dir, 'intruder.yaml')],
      {
        env: agentEnv(wrongPassword),
      },
    );
    await waitFor(() => /"event":"mqtt_error".*Not authorized/.test(intruder!.output()), {
      message: 'the intruder logged its refusal',
      timeoutMs: 30_000,
    });
    await shutdown(intruder);
    await shutdown(agent);
    await shutdown(cloud);

    const logs = { cloud: cloud.output(), agent: agent.output(), intruder: intruder.output() };
    // The logs are real: the roles logged the control they signed, the agent its connection and ACK.
    expect(logs.cloud).toContain('control published');
    expect(logs.agent).toContain('"event":"mqtt_connected"');
    const pemBody = signingPem
      .split('\n')
      .filter((l) => l && !l.startsWith('-----'))
      .join('');
    const secrets: Record<string, string> = {
      'NATS password of the cloud roles': natsUser.password,
      'MQTT password of the bridge': bridge.password,
      'MQTT password of the device': device.password,
      'a wrong device password': wrongPassword,
      'API token': TEST_TOKEN,
      'read-only API token': READ_TOKEN,
      'a mistyped API token': wrongToken,
      'control signing key (PEM body)': pemBody,
      'control signing key (raw seed)': privateKey
        .export({ format: 'der', type: 'pkcs8' })
        .subarray(-32)
        .toString('hex'),
    };
    for (const [who, text] of Object.entries(logs)) {
      const flat = text.replace(/\\n|\s/g, '');
      for (const [what, secret] of Object.entries(secrets)) {
        expect([who, what, flat.includes(secret.replace(/\s/g, ''))]).toEqual([who, what, false]);
        expect([who, what, flat.includes(secret.slice(0, 16))]).toEqual([who, what, false]);
      }
    }
  });
});
