/**
 * Telemetry reads (docs/telemetry.md): a lineage's telemetry, a coalesced telemetry table of the
 * project or of a fleet, the coalesced tables and the data points. Rows of a time range, or time
 * buckets with min, max, avg, count and last per field; keyset pages behind an opaque cursor.
 */
import type {
  FastifyBaseLogger,
  FastifyInstance,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
} from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import {
  type ReadStore,
  type TelemetrySource,
  coalescedTelemetrySource,
  getLineage,
  isTelemetryQueryError,
  lineageTelemetrySource,
  listCoalescedTelemetry,
  readTelemetryBuckets,
  readTelemetryRows,
} from '../../projections';
import { ApiError, notFound } from '../errors';
import { error, lineageParams, projectParams } from './schemas';

type App = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  ZodTypeProvider
>;

const MAX_BUCKET_S = 366 * 24 * 3600;
const UNIT: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** `90`, `30s`, `5m`, `1h`, `1d`: a bucket width in seconds. */
export function parseBucket(text: string): number | null {
  const m = /^([1-9][0-9]{0,7})([smhd]?)$/.exec(text);
  if (!m) return null;
  const s = Number(m[1]) * (UNIT[m[2] || 's'] ?? 1);
  return s <= MAX_BUCKET_S ? s : null;
}

const instant = z
  .string()
  .max(40)
  .refine((s) => /^\d{4}-\d{2}-\d{2}T/.test(s) && Number.isFinite(Date.parse(s)), {
    message: 'must be an ISO 8601 date-time, e.g. 2026-04-28T09:00:00Z',
  });
// eslint-disable-next-line no-control-regex -- rejecting control characters is the point
const FIELD_NAME = /^[^\u0000-\u001f\u007f,]{1,200}$/u;

const readQuery = z.object({
  from: instant.optional().describe('first instant (inclusive)'),
  to: instant.optional().describe('end of the range (exclusive)'),
  fields: z
    .string()
    .max(4000)
    .refine((s) => s.split(',').every((f) => FIELD_NAME.test(f)) && s.split(',').length <= 50, {
      message: 'a comma-separated list of up to 50 field names',
    })
    .optional()
    .describe('comma-separated field names (default: all; with bucket: all INTEGER and REAL fields)'),
  bucket: z
    .string()
    .max(12)
    .refine((s) => parseBucket(s) !== null, {
      message: `a width such as 30s, 5m, 1h, 1d or a number of seconds (at most ${MAX_BUCKET_S})`,
    })
    .optional()
    .describe('time buckets of this width, aligned to the epoch, with aggregates per field'),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
  cursor: z.string().min(1).max(1000).optional().describe('next_cursor of the previous page'),
});
const scopedQuery = readQuery.extend({
  device: z.string().min(1).max(200).optional().describe('only this device (UUID or name)'),
});

const wire = z.unknown().describe('a wire value (docs/wire-values.md)');
const aggregates = z.object({
  min: z.number().nullable(),
  max: z.number().nullable(),
  avg: z.number().nullable(),
  count: z.number(),
  last: z.number().nullable(),
});
const telemetryPage = z.object({
  table: z.string().nullable(),
  coalesced: z.boolean(),
  device_id: z.string().nullable(),
  fields: z.array(z.object({ name: z.string(), affinity: z.string() })),
  bucket_seconds: z.number().nullable(),
  rows: z
    .array(
      z.object({
        device_id: z.string(),
        ts: z.string(),
        time: z.string(),
        row_id: z.string().nullable(),
        values: z.record(z.string(), wire),
      }),
    )
    .optional(),
  buckets: z
    .array(
      z.object({
        start: z.string(),
        start_ms: z.number(),
        rows: z.number(),
        fields: z.record(z.string(), aggregates),
      }),
    )
    .optional(),
  next_cursor: z.string().nullable(),
});
type TelemetryPage = z.infer<typeof telemetryPage>;
type ReadQuery = z.infer<typeof readQuery>;

async function read(store: ReadStore, source: TelemetrySource, q: ReadQuery): Promise<TelemetryPage> {
  const range = {
    ...(q.from !== undefined ? { from_ms: Date.parse(q.from) } : {}),
    ...(q.to !== undefined ? { to_ms: Date.parse(q.to) } : {}),
  };
  const common = {
    ...range,
    ...(q.fields !== undefined ? { fields: q.fields.split(',') } : {}),
    limit: q.limit ?? 100,
    ...(q.cursor !== undefined ? { cursor: q.cursor } : {}),
  };
  const head = {
    table: source.table,
    coalesced: source.coalesced,
    device_id: source.device_id,
    fields: [...source.fields.entries()].map(([name, c]) => ({ name, affinity: c.affinity })),
  };
  try {
    if (q.bucket !== undefined) {
      const seconds = parseBucket(q.bucket)!;
      const out = await readTelemetryBuckets(store, source, { ...common, bucket_ms: seconds * 1000 });
      return { ...head, bucket_seconds: seconds, buckets: out.items, next_cursor: out.next_cursor };
    }
    const out = await readTelemetryRows(store, source, common);
    return { ...head, bucket_seconds: null, rows: out.items, next_cursor: out.next_cursor };
  } catch (err) {
    if (isTelemetryQueryError(err)) throw new ApiError(400, err.code, err.message);
    throw err;
  }
}

/** A device of the project by UUID or name, among those with telemetry. */
async function deviceOf(store: ReadStore, projectId: string, device: string): Promise<string> {
  const row = await store.db
    .selectFrom('edge_ts_lineages')
    .select('device_id')
    .where('project_id', '=', projectId)
    .where((eb) => eb.or([eb('device_id', '=', device), eb('device_name', '=', device)]))
    .executeTakeFirst();
  if (!row) throw notFound('device with telemetry');
  return row.device_id;
}

export async function registerTelemetryRoutes(app: App, deps: Readonly<{ store: ReadStore }>) {
  const { store } = deps;
  const base = '/edge';

  app.get(
    `${base}/lineages/:lineage_id/telemetry`,
    {
      schema: {
        tags: ['telemetry'],
        description: "The lineage's telemetry rows, or time buckets with aggregates (docs/telemetry.md).",
        params: lineageParams,
        querystring: readQuery,
        response: { 200: telemetryPage, '4xx': error },
      },
    },
    async (req) => {
      const { project_id, lineage_id } = req.params;
      const source = await lineageTelemetrySource(store, project_id, lineage_id);
      if (source === undefined) {
        if (await getLineage(store.db, project_id, lineage_id)) {
          throw new ApiError(
            409,
            'not_telemetry',
            'this lineage replicates rows, not telemetry; read them at /mirror-rows',
          );
        }
        throw notFound('lineage');
      }
      if (source === null) {
        // Not approved yet: nothing is materialized (its batches are staged).
        return {
          table: null,
          coalesced: false,
          device_id: null,
          fields: [],
          bucket_seconds: req.query.bucket !== undefined ? parseBucket(req.query.bucket) : null,
          ...(req.query.bucket !== undefined ? { buckets: [] } : { rows: [] }),
          next_cursor: null,
        };
      }
      return read(store, source, req.query);
    },
  );

  const scoped = async (
    projectId: string,
    scope: 'project' | 'fleet',
    scopeId: string,
    table: string,
    query: z.infer<typeof scopedQuery>,
  ) => {
    const { device, ...rest } = query;
    const deviceId = device !== undefined ? await deviceOf(store, projectId, device) : null;
    const source = await coalescedTelemetrySource(store, projectId, scope, scopeId, table, deviceId);
    if (!source) throw notFound(`coalesced telemetry table ${JSON.stringify(table)} of this ${scope}`);
    return read(store, source, rest);
  };

  app.get(
    `${base}/fleets/:fleet_id/telemetry/:source_table`,
    {
      schema: {
        tags: ['telemetry'],
        description: "A fleet's coalesced telemetry table (registry coalescing in fleet mode).",
        params: projectParams.extend({
          fleet_id: z.string().uuid(),
          source_table: z.string().min(1).max(300),
        }),
        querystring: scopedQuery,
        response: { 200: telemetryPage, '4xx': error },
      },
    },
    async (req) =>
      scoped(req.params.project_id, 'fleet', req.params.fleet_id, req.params.source_table, req.query),
  );

  app.get(
    `${base}/telemetry/:source_table`,
    {
      schema: {
        tags: ['telemetry'],
        description: "The project's coalesced telemetry table (registry coalescing in project mode).",
        params: projectParams.extend({ source_table: z.string().min(1).max(300) }),
        querystring: scopedQuery,
        response: { 200: telemetryPage, '4xx': error },
      },
    },
    async (req) =>
      scoped(req.params.project_id, 'project', req.params.project_id, req.params.source_table, req.query),
  );

  app.get(
    `${base}/telemetry`,
    {
      schema: {
        tags: ['telemetry'],
        description: 'The coalesced telemetry tables of the project, with their fields.',
        params: projectParams,
        querystring: z.object({
          fleet_id: z.string().uuid().optional(),
          source_table: z.string().min(1).max(300).optional(),
        }),
      },
    },
    async (req) => ({
      items: await listCoalescedTelemetry(store, req.params.project_id, {
        ...(req.query.fleet_id !== undefined
          ? { scope: 'fleet' as const, scope_id: req.query.fleet_id }
          : {}),
        ...(req.query.source_table !== undefined ? { source_table: req.query.source_table } : {}),
      }),
    }),
  );

  app.get(
    `${base}/data-points`,
    {
      schema: {
        tags: ['telemetry'],
        description:
          'Data points: named, typed series of device tables that approvals bound (map, auto_create_and_map).',
        params: projectParams,
        querystring: z.object({
          device_id: z.string().min(1).max(200).optional().describe('UUID or name'),
          source_table: z.string().min(1).max(300).optional(),
          limit: z.coerce.number().int().min(1).max(500).optional(),
        }),
      },
    },
    async (req) => {
      const { device_id, source_table, limit } = req.query;
      const items = await store.db
        .selectFrom('edge_data_points')
        .selectAll()
        .where('project_id', '=', req.params.project_id)
        .$if(device_id !== undefined, (b) =>
          b.where((eb) => eb.or([eb('device_id', '=', device_id!), eb('device_name', '=', device_id!)])),
        )
        .$if(source_table !== undefined, (b) => b.where('source_table', '=', source_table!))
        .orderBy('device_name')
        .orderBy('source_table')
        .orderBy('name')
        .limit(limit ?? 500)
        .execute();
      return { items };
    },
  );
}
