import { z } from 'zod';

export const DEFAULT_PROJECT_ID = '0190a000-0000-7000-8000-000000000001';

const bool = z
  .string()
  .optional()
  .transform((v) => v === '1' || v === 'true' || v === 'yes');

/**
 * Every setting of the cloud roles and the `sluice` CLI, read once from the environment by the entry
 * point (the only place that reads process.env). Documented in README "Configuration".
 */
export const envSchema = z.object({
  SLUICE_NATS_URL: z.string().default('nats://127.0.0.1:4222'),
  SLUICE_NATS_CREDS: z.string().optional(),
  /** The cloud roles' NATS user (`sluice-cloud` in the shipped broker config); see docs/security.md. */
  SLUICE_NATS_USER: z.string().optional(),
  SLUICE_NATS_PASSWORD: z.string().optional(),
  /** TLS (docs/security.md): the CA file the NATS server's certificate chains to (tls:// URLs). */
  SLUICE_NATS_TLS_CA: z.string().optional(),
  /** One broker URL, or several comma-separated (cluster nodes): the bridge fails over between them. */
  SLUICE_MQTT_URL: z.string().default('mqtt://127.0.0.1:1883'),
  /** The bridge's MQTT TLS: the broker's CA file; a certificate and key where the broker maps certificates. */
  SLUICE_MQTT_TLS_CA: z.string().optional(),
  SLUICE_MQTT_TLS_CERT: z.string().optional(),
  SLUICE_MQTT_TLS_KEY: z.string().optional(),
  /** With both, the API serves HTTPS with this certificate and key (PEM files). */
  SLUICE_API_TLS_CERT: z.string().optional(),
  SLUICE_API_TLS_KEY: z.string().optional(),
  SLUICE_MQTT_USERNAME: z.string().optional(),
  SLUICE_MQTT_PASSWORD: z.string().optional(),
  /**
   * A worker's name among the workers sharing the ingress partitions; stable across its restarts,
   * it takes its partitions back at once (otherwise after their leases expire). Unique per process.
   */
  SLUICE_WORKER_ID: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, _ and - (at most 64)')
    .optional(),
  /** A projector's name among the projectors sharing the projections' partitions; like SLUICE_WORKER_ID. */
  SLUICE_PROJECTOR_ID: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, _ and - (at most 64)')
    .optional(),
  /** This bridge's name among several (client id `sluice-bridge-<id>`); default: the host name. */
  SLUICE_BRIDGE_ID: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, "_" and "-" only (it becomes an MQTT client id)')
    .optional(),
  /** The whole MQTT client id, overriding SLUICE_BRIDGE_ID (kept for existing deployments). */
  SLUICE_BRIDGE_CLIENT_ID: z.string().optional(),
  /** Where bridges read uplinks: `shared` MQTT subscription, `jetstream` ($MQTT_msgs of nats-server's MQTT listener), or `auto`. */
  SLUICE_BRIDGE_UPLINKS: z.enum(['auto', 'shared', 'jetstream']).default('auto'),
  SLUICE_READ_STORE: z.string().default('sqlite:.data/sluice.db'),
  SLUICE_API_HOST: z.string().default('127.0.0.1'),
  SLUICE_API_PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  SLUICE_API_TOKENS: z.string().optional(),
  SLUICE_API_TOKENS_FILE: z.string().optional(),
  SLUICE_PROJECT_ID: z.string().uuid().default(DEFAULT_PROJECT_ID),
  /** JSON object mapping MQTT topic slugs to project ids; unmapped slugs go to SLUICE_PROJECT_ID. */
  SLUICE_TOPIC_PROJECTS: z.string().optional(),
  /** JSON object mapping MQTT topic slugs to fleet ids (UUIDs): the fleet a new device starts in. */
  SLUICE_TOPIC_FLEETS: z.string().optional(),
  SLUICE_CONTROL_SIGNING_KEY: z.string().optional(),
  SLUICE_CONTROL_SIGNING_KEY_FILE: z.string().optional(),
  /** HMAC key of upload URLs (≥ 32 bytes); derived from the control signing key when unset. */
  SLUICE_UPLOAD_SECRET: z.string().optional(),
  /** Base URL devices reach the API's upload endpoint at (default http://SLUICE_API_HOST:SLUICE_API_PORT). */
  SLUICE_UPLOAD_BASE_URL: z.string().url().optional(),
  /** Unset: new streams get 1 and existing streams keep theirs; never lower than a stream has. */
  SLUICE_STREAM_REPLICAS: z.coerce.number().int().min(1).max(5).optional(),
  SLUICE_LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  SLUICE_LOG_PRETTY: bool,
  /** `/readyz` fails while a projection is more than this many events behind its stream. */
  SLUICE_READY_MAX_LAG: z.coerce.number().int().positive().default(10_000),
  /** Where the operator CLI reaches the API; default: this environment's own API (SLUICE_API_HOST/PORT). */
  SLUICE_API_URL: z.string().url().optional(),
  /** The operator CLI's bearer token. */
  SLUICE_TOKEN: z.string().optional(),
});
export type Env = z.infer<typeof envSchema>;

export function readEnv(source: NodeJS.ProcessEnv = process.env): Env {
  const parsed = envSchema.safeParse(source);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`).join('\n');
    throw new Error(
      `invalid configuration:\n${problems}\nFix the environment variables above and start again.`,
    );
  }
  return parsed.data;
}

/**
 * The API's base URL as a client reaches it: SLUICE_API_URL, else the address the API role listens
 * on in the same environment (so `SLUICE_API_PORT=9090 make run` and the CLI agree without more).
 */
export function apiUrl(env: Env): string {
  if (env.SLUICE_API_URL) return env.SLUICE_API_URL.replace(/\/+$/, '');
  const host = ['0.0.0.0', '::', ''].includes(env.SLUICE_API_HOST) ? '127.0.0.1' : env.SLUICE_API_HOST;
  return `http://${host.includes(':') ? `[${host}]` : host}:${env.SLUICE_API_PORT}`;
}

export type ReadStoreLocation = { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string };

export function parseReadStore(spec: string): ReadStoreLocation {
  if (spec.startsWith('postgres://') || spec.startsWith('postgresql://'))
    return { kind: 'postgres', url: spec };
  if (spec.startsWith('sqlite:')) return { kind: 'sqlite', path: spec.slice('sqlite:'.length) };
  throw new Error(`SLUICE_READ_STORE must be sqlite:PATH or postgres://...; got ${JSON.stringify(spec)}`);
}

export function topicProjects(env: Env): (slug: string) => string {
  const map = env.SLUICE_TOPIC_PROJECTS
    ? (JSON.parse(env.SLUICE_TOPIC_PROJECTS) as Record<string, string>)
    : {};
  return (slug) => map[slug] ?? env.SLUICE_PROJECT_ID;
}

const fleetMap = z.record(z.string(), z.string().uuid());

/** Slug → fleet of a new device (SLUICE_TOPIC_FLEETS); null for slugs not mapped. */
export function topicFleets(env: Env): (slug: string) => string | null {
  if (!env.SLUICE_TOPIC_FLEETS) return () => null;
  let raw: unknown;
  try {
    raw = JSON.parse(env.SLUICE_TOPIC_FLEETS);
  } catch {
    throw new Error(
      'invalid configuration: SLUICE_TOPIC_FLEETS is not JSON; give an object {"slug": "<fleet uuid>"}',
    );
  }
  const parsed = fleetMap.safeParse(raw);
  if (!parsed.success) {
    throw new Error(
      `invalid configuration: SLUICE_TOPIC_FLEETS: ${parsed.error.issues[0]?.path.join('.') ?? ''} ${parsed.error.issues[0]?.message ?? ''}; give an object {"slug": "<fleet uuid>"}`,
    );
  }
  const map = new Map(Object.entries(parsed.data));
  return (slug) => map.get(slug) ?? null;
}
