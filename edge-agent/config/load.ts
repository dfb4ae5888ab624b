import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { MAX_BATCH_ROWS, MAX_PAYLOAD_BYTES } from '../../domain/protocol/contracts';
import { checkPredicateText, type TableFilter } from '../capture/filter';
import { toPublicKey } from '../control/signature';
import { rawConfigSchema, type RawConfig } from './schema';
import { parseDuration, parseSize } from './units';
import { badBrokerUrls, splitBrokerUrls } from '../../infra/config/brokers';

export type TableStrategyConfig = Readonly<{
  strategy: 'rows' | 'telemetry' | 'ignore';
  /** `ts_column` (or its older name `timestamp_column`): a telemetry row's sample time. */
  timestampColumn?: string;
  /** Edge filters; absent when the table has none. */
  filter?: TableFilter;
}>;

/** The resolved configuration: env names replaced by their values, units in ms and bytes. */
export type AgentConfig = Readonly<{
  connection: Readonly<{
    /** One broker URL or several, comma-separated (tried in order, then round robin). */
    serverUrl: string;
    deviceId: string;
    rootTopic: string;
    clientId: string;
    keepaliveSec: number;
    username?: string;
    password?: string;
    tls?: Readonly<{ caPath?: string; certPath?: string; keyPath?: string }>;
  }>;
  replication: Readonly<{
    sourceDbPath: string;
    stateDbPath: string;
    flushIntervalMs: number;
    maxBatchBytes: number;
    maxBatchRows: number;
    localRetentionBytes: number;
    tableStrategies: Readonly<Record<string, TableStrategyConfig>>;
    snapshotOnFirstRun: boolean;
    delivery: 'receipt' | 'puback';
    receiptTimeoutMs: number;
    maxInflightBatches: number;
  }>;
  security: Readonly<{ signedControl: Readonly<{ enabled: boolean; publicKey?: KeyObject }> }>;
}>;

export type ConfigProblem = Readonly<{ path: string; message: string }>;

export type LoadResult =
  | Readonly<{ ok: true; config: AgentConfig; warnings: readonly ConfigProblem[] }>
  | Readonly<{ ok: false; problems: readonly ConfigProblem[]; warnings: readonly ConfigProblem[] }>;

export type Env = Readonly<Record<string, string | undefined>>;

export const formatProblem = (p: ConfigProblem): string => (p.path ? `${p.path}: ${p.message}` : p.message);

/** Read and check a YAML config file. Never throws for a bad file: every problem is returned. */
export function loadAgentConfig(path: string, env: Env = process.env): LoadResult {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    return {
      ok: false,
      problems: [{ path: '', message: `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? err}` }],
      warnings: [],
    };
  }
  return parseAgentConfig(text, env);
}

export function parseAgentConfig(text: string, env: Env = process.env): LoadResult {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) {
    return {
      ok: false,
      problems: doc.errors.map((e) => ({
        path: '',
        message: `YAML syntax error at line ${e.linePos?.[0]?.line ?? '?'}: ${e.message.split('\n')[0]}`,
      })),
      warnings: [],
    };
  }
  const raw: unknown = doc.toJS();
  const parsed = rawConfigSchema.safeParse(raw ?? {});
  if (parsed.success) return resolveConfig(parsed.data, env);
  const problems = parsed.error.issues.map(issueToProblem);
  // Report the rest too: drop the fields that failed (defaults apply) and check what remains,
  // so one run of `validate` lists every problem, not just the first layer.
  const pruned = structuredClone(raw ?? {}) as Record<string, unknown>;
  let issues = parsed.error.issues;
  for (let round = 0; round < 5; round++) {
    for (const i of issues) {
      if (i.code === 'unrecognized_keys') for (const k of i.keys) removeAt(pruned, [...i.path, k]);
      else if (valueAt(pruned, i.path) === undefined && i.path.length > 1)
        removeAt(pruned, i.path.slice(0, -1));
      else removeAt(pruned, i.path);
    }
    const retry = rawConfigSchema.safeParse(pruned);
    if (retry.success) {
      const rest = resolveConfig(retry.data, env);
      const seen = new Set(problems.map((p) => p.path));
      if (!rest.ok) problems.push(...rest.problems.filter((p) => !seen.has(p.path)));
      return { ok: false, problems, warnings: rest.warnings };
    }
    issues = retry.error.issues;
  }
  return { ok: false, problems, warnings: [] };
}

function valueAt(obj: unknown, path: readonly PropertyKey[]): unknown {
  let cur = obj;
  for (const k of path) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[k];
  }
  return cur;
}

function issueToProblem(i: z.core.$ZodIssue): ConfigProblem {
  return {
    path: i.path.join('.'),
    message:
      i.code === 'invalid_type' && i.message.includes('received undefined')
        ? 'is required'
        : i.code === 'unrecognized_keys'
          ? `unknown field${i.keys.length > 1 ? 's' : ''} ${i.keys.join(', ')}`
          : i.message,
  };
}

function removeAt(obj: Record<string, unknown>, path: readonly PropertyKey[]): void {
  let cur: unknown = obj;
  for (const k of path.slice(0, -1)) {
    if (typeof cur !== 'object' || cur === null) return;
    cur = (cur as Record<PropertyKey, unknown>)[k];
  }
  const last = path[path.length - 1];
  if (last !== undefined && typeof cur === 'object' && cur !== null)
    delete (cur as Record<PropertyKey, unknown>)[last];
}

type Problems = ConfigProblem[];

/** `X_env` wins when its variable is set; inline `X` is the fallback (handy for dev and demos). */
function pick(
  problems: Problems,
  env: Env,
  block: string,
  field: string,
  inline: string | undefined,
  envName: string | undefined,
  required: boolean,
): string | undefined {
  if (envName !== undefined) {
    const v = env[envName];
    if (v !== undefined && v !== '') return v;
    if (inline !== undefined) return inline;
    if (required)
      problems.push({ path: `${block}.${field}_env`, message: `environment variable ${envName} is not set` });
    return undefined;
  }
  if (inline !== undefined) return inline;
  if (required) problems.push({ path: `${block}.${field}_env`, message: `is required (or ${field} inline)` });
  return undefined;
}

const ROOT_TOPIC = /^([^/#+\s]+)?\/([^/#+\s]+)$/;
// eslint-disable-next-line no-control-regex -- control characters are what is refused
const MANGLED = /[.*>\u0000-\u001f\u007f]/;
/** A name a broker would mangle (NATS subject syntax) or the cloud would refuse (over 128 characters). */
const mangled = (name: string) => MANGLED.test(name) || name.length > 128;

function resolveConfig(raw: RawConfig, env: Env): LoadResult {
  const problems: Problems = [];
  const warnings: Problems = [];
  const c = raw.connection;
  const r = raw['sqlite-replication'];
  const serverUrl = pick(problems, env, 'connection', 'server_url', c.server_url, c.server_url_env, true);
  const deviceId = pick(problems, env, 'connection', 'device_id', c.device_id, c.device_id_env, true);
  const rootTopic = pick(problems, env, 'connection', 'root_topic', c.root_topic, c.root_topic_env, true);

  for (const bad of serverUrl ? badBrokerUrls(serverUrl) : []) {
    problems.push({
      path: `connection.server_url${c.server_url_env ? '_env' : ''}`,
      message: `expected a broker URL like mqtt://host:1883 or ssl://host:8883, got "${bad}"`,
    });
  }
  if (serverUrl !== undefined && splitBrokerUrls(serverUrl).length === 0)
    problems.push({ path: 'connection.server_url', message: 'expected at least one broker URL' });
  if (rootTopic) {
    const m = ROOT_TOPIC.exec(rootTopic);
    const where = `connection.root_topic${c.root_topic_env ? '_env' : ''}`;
    if (!m) {
      problems.push({
        path: where,
        message: `expected {topic_slug}/{device_name} or /{device_name}, got "${rootTopic}"`,
      });
    } else if (mangled(m[1] ?? '') || mangled(m[2] ?? '')) {
      problems.push({
        path: where,
        message:
          `root topic "${rootTopic.slice(0, 200)}" cannot reach the cloud intact: a name holds a ".", "*", ">" ` +
          'or a control character (the NATS MQTT listener turns them into subject syntax and drops or ' +
          'misroutes the message) or is longer than 128 characters (the cloud refuses the topic); ' +
          'pick a name of letters, digits, "_" and "-"',
      });
    } else if (deviceId && m[2] !== deviceId) {
      problems.push({
        path: where,
        message: `root topic "${rootTopic}" must end with the device id "${deviceId}"`,
      });
    }
  }
  if (c.mqtt.clean_session !== false) {
    problems.push({
      path: 'connection.mqtt.clean_session',
      message: 'must be false: a persistent session keeps controls queued while the device is offline',
    });
  }
  const username = c.mqtt.username_env ? env[c.mqtt.username_env] : undefined;
  const password = c.mqtt.password_env ? env[c.mqtt.password_env] : undefined;
  if (c.mqtt.username_env && username === undefined) {
    problems.push({
      path: 'connection.mqtt.username_env',
      message: `environment variable ${c.mqtt.username_env} is not set`,
    });
  }
  if (c.mqtt.password_env && password === undefined) {
    // The variable's name is fine to print; its value never is.
    problems.push({
      path: 'connection.mqtt.password_env',
      message: `environment variable ${c.mqtt.password_env} is not set`,
    });
  }
  const tls: Record<string, string> = {};
  for (const [field, key] of [
    ['ca_env', 'caPath'],
    ['cert_env', 'certPath'],
    ['key_env', 'keyPath'],
  ] as const) {
    const name = c.mqtt.tls?.[field];
    if (!name) continue;
    const file = env[name];
    const where = `connection.mqtt.tls.${field}`;
    if (!file) problems.push({ path: where, message: `environment variable ${name} is not set` });
    else if (!existsSync(file))
      problems.push({ path: where, message: `${name} names ${file}, which does not exist` });
    else tls[key] = file;
  }

  const source = pick(
    problems,
    env,
    'sqlite-replication',
    'source_db_path',
    r.source_db_path,
    r.source_db_path_env,
    true,
  );
  const stateInline = pick(
    problems,
    env,
    'sqlite-replication',
    'state_db_path',
    r.state_db_path,
    r.state_db_path_env,
    false,
  );

  const maxBatchBytes = parseSize(r.max_batch_bytes)!;
  if (maxBatchBytes > MAX_PAYLOAD_BYTES || maxBatchBytes < 4096) {
    problems.push({
      path: 'sqlite-replication.max_batch_bytes',
      message: `must be between 4KiB and ${MAX_PAYLOAD_BYTES} bytes (512 KiB, the wire limit)`,
    });
  }
  if (r.max_batch_rows > MAX_BATCH_ROWS) {
    problems.push({
      path: 'sqlite-replication.max_batch_rows',
      message: `must be at most ${MAX_BATCH_ROWS} (the wire limit)`,
    });
  }
  const strategies: Record<string, TableStrategyConfig> = {};
  for (const [table, s] of Object.entries(r.table_strategies)) {
    strategies[table] = resolveTable(`sqlite-replication.table_strategies.${table}`, s, problems, warnings);
  }

  const sc = raw.security?.signed_control;
  let publicKey: KeyObject | undefined;
  if (sc?.enabled) {
    const keyText = pick(
      problems,
      env,
      'security.signed_control',
      'public_key',
      sc.public_key,
      sc.public_key_env,
      true,
    );
    if (keyText) {
      try {
        publicKey = toPublicKey(keyText);
      } catch (err) {
        problems.push({
          path: `security.signed_control.public_key${sc.public_key_env ? '_env' : ''}`,
          message: `not an Ed25519 public key (PEM, or 32 bytes in hex/base64): ${(err as Error).message}`,
        });
      }
    }
  } else {
    warnings.push({
      path: 'security.signed_control.enabled',
      message: 'is off: controls are obeyed without a signature check (keep it on in production)',
    });
  }

  if (problems.length > 0 || !serverUrl || !deviceId || !rootTopic || !source) {
    return { ok: false, problems, warnings };
  }
  const sourceDbPath = resolve(source);
  const config: AgentConfig = {
    connection: {
      serverUrl,
      deviceId,
      rootTopic,
      clientId: c.mqtt.client_id ?? `sluice-agent-${deviceId}`,
      keepaliveSec: Math.max(1, Math.round((parseDuration(c.mqtt.keepalive) ?? 30_000) / 1000)),
      ...(username !== undefined ? { username } : {}),
      ...(password !== undefined ? { password } : {}),
      ...(Object.keys(tls).length > 0 ? { tls } : {}),
    },
    replication: {
      sourceDbPath,
      stateDbPath: resolve(stateInline ?? join(dirname(sourceDbPath), 'sluice-state.db')),
      flushIntervalMs: parseDuration(r.flush_interval)!,
      maxBatchBytes,
      maxBatchRows: r.max_batch_rows,
      localRetentionBytes: parseSize(r.local_retention_bytes)!,
      tableStrategies: strategies,
      snapshotOnFirstRun: r.snapshot_on_first_run,
      delivery: r.delivery,
      receiptTimeoutMs: parseDuration(r.receipt_timeout)!,
      maxInflightBatches: r.max_inflight_batches,
    },
    security: { signedControl: { enabled: sc?.enabled ?? false, ...(publicKey ? { publicKey } : {}) } },
  };
  return { ok: true, config, warnings };
}

type RawTable = RawConfig['sqlite-replication']['table_strategies'][string];

/**
 * One table's strategy and filters, with the checks that need no database (`sluice-agent
 * validate` checks the rest against it: capture/filter.ts checkTableConfig).
 */
function resolveTable(
  where: string,
  s: RawTable,
  problems: Problems,
  warnings: Problems,
): TableStrategyConfig {
  if (s.ts_column && s.timestamp_column && s.ts_column !== s.timestamp_column) {
    problems.push({
      path: `${where}.timestamp_column`,
      message: `names ${s.timestamp_column} but ts_column names ${s.ts_column}; keep one (ts_column)`,
    });
  }
  const ts = s.ts_column ?? s.timestamp_column;
  const tsPath = `${where}.${s.ts_column ? 'ts_column' : 'timestamp_column'}`;
  if (s.strategy === 'telemetry' && !ts) {
    problems.push({ path: `${where}.ts_column`, message: 'is required for strategy telemetry' });
  }
  if (s.strategy !== 'telemetry' && ts) {
    warnings.push({ path: tsPath, message: 'only used by strategy telemetry' });
  }
  const filtered = s.include_columns || s.exclude_columns || s.where !== undefined;
  if (filtered && s.strategy === 'ignore') {
    warnings.push({
      path: where,
      message: 'filters of a table with strategy ignore do nothing: nothing of it is sent',
    });
  }
  if (s.include_columns && s.exclude_columns) {
    problems.push({
      path: `${where}.exclude_columns`,
      message:
        'include_columns and exclude_columns cannot both be set: list what is sent, or what is kept back',
    });
  }
  for (const field of ['include_columns', 'exclude_columns'] as const) {
    const list = s[field] ?? [];
    const dup = list.filter((c, i) => list.indexOf(c) !== i);
    if (dup.length > 0)
      problems.push({ path: `${where}.${field}`, message: `names ${dup.join(', ')} twice` });
  }
  if (ts && s.strategy === 'telemetry') {
    if (s.exclude_columns?.includes(ts) || (s.include_columns && !s.include_columns.includes(ts))) {
      problems.push({
        path: tsPath,
        message: `${ts} holds the sample time: it cannot be left out by include_columns/exclude_columns`,
      });
    }
  }
  if (s.where !== undefined) {
    const bad = checkPredicateText(s.where);
    if (bad) problems.push({ path: `${where}.where`, message: bad });
  }
  const filter: TableFilter = {
    ...(s.include_columns ? { include: s.include_columns } : {}),
    ...(s.exclude_columns ? { exclude: s.exclude_columns } : {}),
    ...(s.where !== undefined ? { where: s.where } : {}),
  };
  return {
    strategy: s.strategy,
    ...(ts ? { timestampColumn: ts } : {}),
    ...(filtered && s.strategy !== 'ignore' ? { filter } : {}),
  };
}
