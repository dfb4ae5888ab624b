import { formatProblem, parseAgentConfig } from './load';
import { parseDuration, parseSize } from './units';

const good = `
connection:
  transport: mqtt
  server_url_env: SLUICE_MQTT_URL
  device_id_env: SLUICE_DEVICE_ID
  root_topic_env: SLUICE_ROOT_TOPIC
  mqtt:
    clean_session: false
    username_env: MQTT_USER
    password_env: MQTT_PASS
  jitr: { enabled: false }     # seeds' blocks we do not use are accepted
sqlite-replication:
  source_db_path_env: SLUICE_SOURCE_DB_PATH
  state_db_path_env: SLUICE_STATE_DB_PATH
  flush_interval: 5s
  table_strategies:
    order_events: { strategy: rows }
    temps: { strategy: telemetry, timestamp_column: ts }
    scratch: { strategy: ignore }
security:
  capabilities:
    sqlite-replication: true
  signed_control:
    enabled: true
    public_key_env: SLUICE_CONTROL_KEY
`;

const env = {
  SLUICE_MQTT_URL: 'ssl://broker.example:8883',
  SLUICE_DEVICE_ID: 'warehouse-gw-01',
  SLUICE_ROOT_TOPIC: 'acme/warehouse-gw-01',
  MQTT_USER: 'u',
  MQTT_PASS: 's3cret',
  SLUICE_SOURCE_DB_PATH: '/var/lib/app/source.db',
  SLUICE_STATE_DB_PATH: '/var/lib/sluice/state.db',
  SLUICE_CONTROL_KEY: '11'.repeat(32),
};

const problemsOf = (yaml: string, e: Record<string, string> = env) => {
  const r = parseAgentConfig(yaml, e);
  return r.ok ? [] : r.problems.map(formatProblem);
};

describe('config', () => {
  it('resolves a seeds-shaped file with env vars and defaults', () => {
    const r = parseAgentConfig(good, env);
    if (!r.ok) throw new Error(r.problems.map(formatProblem).join('\n'));
    const c = r.config;
    expect(c.connection).toMatchObject({
      serverUrl: 'ssl://broker.example:8883',
      deviceId: 'warehouse-gw-01',
      rootTopic: 'acme/warehouse-gw-01',
      clientId: 'sluice-agent-warehouse-gw-01',
      username: 'u',
      password: 's3cret',
    });
    expect(c.replication).toMatchObject({
      sourceDbPath: '/var/lib/app/source.db',
      stateDbPath: '/var/lib/sluice/state.db',
      flushIntervalMs: 5000,
      maxBatchBytes: 512 * 1024,
      maxBatchRows: 4096,
      localRetentionBytes: 256 * 1024 * 1024,
      snapshotOnFirstRun: false,
      delivery: 'receipt',
      receiptTimeoutMs: 30_000,
    });
    expect(c.replication.tableStrategies.temps).toEqual({ strategy: 'telemetry', timestampColumn: 'ts' });
    expect(c.security.signedControl.enabled).toBe(true);
    expect(c.security.signedControl.publicKey?.asymmetricKeyType).toBe('ed25519');
  });

  it('accepts inline values for dev and lets a set env var win over them', () => {
    const yaml = `
connection:
  server_url: mqtt://127.0.0.1:1883
  device_id_env: DEV
  device_id: gw-1
  root_topic: /gw-1
sqlite-replication:
  source_db_path: ./app.db
`;
    const r = parseAgentConfig(yaml, {});
    expect(r.ok && r.config.connection.rootTopic).toBe('/gw-1');
    expect(problemsOf(yaml, { DEV: 'gw-2' })).toEqual([
      'connection.root_topic: root topic "/gw-1" must end with the device id "gw-2"',
    ]);
  });

  it('refuses a root topic a broker would mangle or the cloud would refuse', () => {
    for (const [root, device] of [
      ['acme/>', '>'],
      ['acme/*', '*'],
      ['acme/gw.01', 'gw.01'],
      ['ac.me/gw-01', 'gw-01'],
      [`acme/${'d'.repeat(129)}`, 'd'.repeat(129)],
      ['acme/gw\u000701', 'gw\u000701'],
    ] as const) {
      const problems = problemsOf(good, { ...env, SLUICE_ROOT_TOPIC: root, SLUICE_DEVICE_ID: device });
      expect([root, problems.length, problems[0]]).toEqual([
        root,
        1,
        expect.stringContaining('cannot reach the cloud intact'),
      ]);
    }
    const long = 'd'.repeat(128);
    expect(problemsOf(good, { ...env, SLUICE_ROOT_TOPIC: `acme/${long}`, SLUICE_DEVICE_ID: long })).toEqual(
      [],
    );
  });

  it('reports every problem with its YAML path', () => {
    const bad = `
connection:
  transport: mqtt
  server_url_env: MISSING_URL
  device_id: gw-1
  root_topic: a/b/gw-1
  mqtt:
    clean_session: true
    tls:
      ca_env: MISSING_CA
sqlite-replication:
  flush_interval: 5
  max_batch_bytes: 1MiB
  max_batch_rows: 5000
  local_retention_bytes: lots
  delivery: email
  flush_intervall: 5s
  table_strategies:
    temps: { strategy: telemetry }
    other: { strategy: mirror }
security:
  signed_control:
    enabled: true
`;
    expect(problemsOf(bad, {}).sort()).toEqual(
      [
        'sqlite-replication.flush_interval: expected a duration like 5s',
        'sqlite-replication.local_retention_bytes: expected a size like 512KiB or a number of bytes',
        'sqlite-replication.delivery: expected receipt or puback',
        'sqlite-replication.table_strategies.other.strategy: expected rows, telemetry or ignore',
        'sqlite-replication: unknown field flush_intervall',
        'connection.server_url_env: environment variable MISSING_URL is not set',
        'connection.root_topic: expected {topic_slug}/{device_name} or /{device_name}, got "a/b/gw-1"',
        'connection.mqtt.clean_session: must be false: a persistent session keeps controls queued while the device is offline',
        'connection.mqtt.tls.ca_env: environment variable MISSING_CA is not set',
        'sqlite-replication.source_db_path_env: is required (or source_db_path inline)',
        'sqlite-replication.max_batch_bytes: must be between 4KiB and 524288 bytes (512 KiB, the wire limit)',
        'sqlite-replication.max_batch_rows: must be at most 4096 (the wire limit)',
        'sqlite-replication.table_strategies.temps.ts_column: is required for strategy telemetry',
        'security.signed_control.public_key_env: is required (or public_key inline)',
      ].sort(),
    );
  });

  it('never echoes a secret in a problem', () => {
    const yaml = good.replace('SLUICE_CONTROL_KEY', 'BAD_KEY');
    const problems = problemsOf(yaml, { ...env, BAD_KEY: 'not-a-key' });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^security\.signed_control\.public_key_env: not an Ed25519 public key/);
    expect(problems.join()).not.toContain('s3cret');
  });

  it('reports YAML syntax errors with a line', () => {
    expect(problemsOf('connection: [\n  x')[0]).toMatch(/^YAML syntax error at line \d+/);
  });

  it('parses durations and sizes', () => {
    expect(parseDuration('5s')).toBe(5000);
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('2m')).toBe(120_000);
    expect(parseDuration('5')).toBeUndefined();
    expect(parseDuration('0s')).toBeUndefined();
    expect(parseSize('512KiB')).toBe(524_288);
    expect(parseSize('256 MiB')).toBe(268_435_456);
    expect(parseSize('1KB')).toBe(1000);
    expect(parseSize(4096)).toBe(4096);
    expect(parseSize('-1')).toBeUndefined();
  });
});
