import { z } from 'zod';
import { parseDuration, parseSize } from './units';

/**
 * The YAML as written (seeds' shape). Values stay raw here; `load.ts` resolves `_env` names,
 * units and cross-field rules, and reports every problem with its path.
 */
const duration = z
  .string({ error: 'expected a duration like 5s' })
  .refine((v) => parseDuration(v) !== undefined, {
    error: 'expected a duration like 5s',
  });
const size = z
  .union([z.number(), z.string()], { error: 'expected a size like 512KiB or a number of bytes' })
  .refine((v) => parseSize(v) !== undefined, { error: 'expected a size like 512KiB or a number of bytes' });
const envName = z
  .string({ error: 'expected the name of an environment variable' })
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'expected the name of an environment variable' });
const nonEmpty = z.string({ error: 'expected a string' }).min(1, { error: 'must not be empty' });

const columnList = z
  .array(nonEmpty, { error: 'expected a list of column names' })
  .min(1, { error: 'must name at least one column' });

const tableStrategy = z.strictObject({
  strategy: z
    .enum(['rows', 'telemetry', 'ignore'], { error: 'expected rows, telemetry or ignore' })
    .default('rows'),
  /** The column holding a telemetry row's sample time. `timestamp_column` is the older name. */
  ts_column: nonEmpty.optional(),
  timestamp_column: nonEmpty.optional(),
  /** Edge filters (docs/agent.md, "Filters"): what never leaves the device. */
  include_columns: columnList.optional(),
  exclude_columns: columnList.optional(),
  where: nonEmpty.max(4000, { error: 'must be at most 4000 characters' }).optional(),
});

export const rawConfigSchema = z.looseObject({
  connection: z.looseObject({
    transport: z.literal('mqtt', { error: 'only mqtt is supported' }).default('mqtt'),
    server_url_env: envName.optional(),
    /** One URL, or several (a list, or comma-separated) of cluster nodes to fail over between. */
    server_url: z
      .union([nonEmpty, z.array(nonEmpty).min(1)])
      .transform((v) => (Array.isArray(v) ? v.join(',') : v))
      .optional(),
    device_id_env: envName.optional(),
    device_id: nonEmpty.optional(),
    root_topic_env: envName.optional(),
    root_topic: nonEmpty.optional(),
    mqtt: z
      .looseObject({
        clean_session: z.boolean({ error: 'expected true or false' }).default(false),
        client_id: nonEmpty.optional(),
        keepalive: duration.optional(),
        username_env: envName.optional(),
        password_env: envName.optional(),
        tls: z
          .looseObject({
            ca_env: envName.optional(),
            cert_env: envName.optional(),
            key_env: envName.optional(),
          })
          .optional(),
      })
      .default({ clean_session: false }),
  }),
  'sqlite-replication': z.strictObject({
    source_db_path: nonEmpty.optional(),
    source_db_path_env: envName.optional(),
    state_db_path: nonEmpty.optional(),
    state_db_path_env: envName.optional(),
    flush_interval: duration.default('5s'),
    max_batch_bytes: size.default('512KiB'),
    max_batch_rows: z.number({ error: 'expected a whole number' }).int().positive().default(4096),
    local_retention_bytes: size.default('256MiB'),
    table_strategies: z.record(z.string(), tableStrategy).default({}),
    snapshot_on_first_run: z.boolean({ error: 'expected true or false' }).default(false),
    delivery: z.enum(['receipt', 'puback'], { error: 'expected receipt or puback' }).default('receipt'),
    receipt_timeout: duration.default('30s'),
    max_inflight_batches: z.number({ error: 'expected a whole number' }).int().min(1).max(64).default(4),
  }),
  security: z
    .looseObject({
      signed_control: z
        .strictObject({
          enabled: z.boolean({ error: 'expected true or false' }).default(false),
          public_key: nonEmpty.optional(),
          public_key_env: envName.optional(),
        })
        .optional(),
    })
    .optional(),
});

export type RawConfig = z.infer<typeof rawConfigSchema>;
