import type {
  FastifyBaseLogger,
  FastifyInstance,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
} from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { MAX_WRITE_ROWS } from '../../domain/lineage/decide';
import { wireValueSchema } from '../../domain/protocol/contracts';
import { cloudKey } from '../../domain/lineage/state';
import type { ReadStore } from '../../projections';
import { listCloudRows } from '../../projections/cloud_rows/queries';
import type { CommandService } from '../../worker/commands';
import { ApiError } from '../errors';
import type { IdempotencyStore } from '../idempotency';
import { idempotent } from './edge';
import { error, idemHeaders } from './schemas';

type App = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  ZodTypeProvider
>;

type Deps = Readonly<{ store: ReadStore; commands: CommandService; idempotency: IdempotencyStore }>;

/** The one wire value schema (docs/wire-values.md): `$real` carries integral, -0 and ±Infinity REALs. */
const wireRecord = z.record(z.string(), wireValueSchema);
const stateTableParams = z.object({
  project_id: z.string().uuid(),
  device: z.string().min(1).max(300),
  lineage_id: z.string().uuid(),
});
const writeBody = z.object({
  rows: z
    .array(z.object({ pk: wireRecord, values: wireRecord.default({}) }).strict())
    .min(1)
    .max(MAX_WRITE_ROWS),
});
const authorityBody = z.object({ mode: z.enum(['cloud_authoritative', 'device_authoritative']) });
const events = z.array(z.object({ id: z.string(), type: z.string() }));

/** The lineage, if it belongs to the project and is not deleted; `device` must be its id or name. */
async function ownedLineage(deps: Deps, projectId: string, lineageId: string, device?: string) {
  const l = await deps.store.db
    .selectFrom('edge_table_lineages')
    .select(['lineage_id', 'device_id', 'device_name', 'source_table', 'kind', 'status'])
    .where('project_id', '=', projectId)
    .where('lineage_id', '=', lineageId)
    .executeTakeFirst();
  if (!l || l.status === 'deleted') throw new ApiError(404, 'not_found', 'lineage not found');
  if (device !== undefined && device !== l.device_id && device !== l.device_name) {
    throw new ApiError(
      404,
      'not_found',
      `lineage not found on device ${JSON.stringify(device)}; give the device id or name that owns it`,
    );
  }
  return l;
}

/**
 * Cloud write-back (docs/write-back.md): an operator makes a lineage cloud_authoritative, then
 * writes rows to the device's table; the domain versions them and sends a signed state_write.
 */
export async function registerWriteBackRoutes(app: App, deps: Deps): Promise<void> {
  app.post(
    '/edge/lineages/:lineage_id/authority',
    {
      schema: {
        tags: ['write-back'],
        description:
          'Who wins when the device and the cloud both change a key: cloud_authoritative lets the cloud ' +
          'write rows back (and wins conflicts); device_authoritative (the default) leaves the device in charge.',
        params: z.object({ project_id: z.string().uuid(), lineage_id: z.string().uuid() }),
        headers: idemHeaders,
        body: authorityBody,
        response: {
          200: z.object({ lineage_id: z.string(), version: z.number(), authority: z.string(), events }),
          '4xx': error,
        },
      },
    },
    async (req, reply) => {
      const { project_id, lineage_id } = req.params;
      const out = await idempotent(deps, req, project_id, async (key) => {
        await ownedLineage(deps, project_id, lineage_id);
        const r = await deps.commands.run('lineage.authority', {
          project_id,
          lineage_id,
          authority: req.body.mode,
          idempotency_key: key,
          actor: req.grant!.name,
        });
        return {
          status: 200,
          body: {
            lineage_id: r.lineage_id,
            version: r.version,
            authority: req.body.mode,
            events: r.events.map((e) => ({ id: e.id, type: e.type })),
          },
        };
      });
      return reply.status(out.status).send(out.body as never);
    },
  );

  app.post(
    '/devices/:device/edge/state-tables/:lineage_id/rows',
    {
      schema: {
        tags: ['write-back'],
        description:
          `Write 1–${MAX_WRITE_ROWS} rows back to the device's table (upsert by pk; values merge into the ` +
          "key's cloud row). The lineage must be cloud_authoritative; {device} is the device id or name.",
        params: stateTableParams,
        headers: idemHeaders,
        body: writeBody,
        response: {
          200: z.object({
            lineage_id: z.string(),
            version: z.number(),
            cloud_version: z.number(),
            control_id: z.string(),
            rows: z.array(z.object({ pk: wireRecord, cloud_version: z.number() })),
            events,
          }),
          '4xx': error,
        },
      },
    },
    async (req, reply) => {
      const { project_id, device, lineage_id } = req.params;
      const out = await idempotent(deps, req, project_id, async (key) => {
        await ownedLineage(deps, project_id, lineage_id, device);
        const r = await deps.commands.run('lineage.write-rows', {
          project_id,
          lineage_id,
          rows: req.body.rows,
          idempotency_key: key,
          actor: req.grant!.name,
        });
        const written = r.events.find((e) => e.type === 'CloudRowsWritten');
        const control = r.events.find((e) => e.type === 'ControlIssued');
        if (written?.type === 'CloudRowsWritten' && control?.type === 'ControlIssued') {
          return {
            status: 200,
            body: {
              lineage_id: r.lineage_id,
              version: r.version,
              cloud_version: written.data.cloud_version,
              control_id: control.data.control_id,
              rows: written.data.rows.map((x) => ({ pk: x.pk, cloud_version: x.cloud_version })),
              events: r.events.map((e) => ({ id: e.id, type: e.type })),
            },
          };
        }
        // No events: this very decision was appended before (a retry after a lost ack). Answer
        // from the lineage as it is now: each key's current version and state_write.
        const wb =
          r.state.status === 'registered' && r.state.kind === 'rows' ? r.state.write_back : undefined;
        const current = req.body.rows.map((x) => wb?.rows[cloudKey(x.pk)]);
        const first = current[0];
        // A plain error: the Idempotency-Key is released and the client's retry reads it back.
        if (!first) throw new Error('the write was recorded but could not be read back');
        return {
          status: 200,
          body: {
            lineage_id: r.lineage_id,
            version: r.version,
            cloud_version: first.cloud_version,
            control_id: first.control_id ?? '',
            rows: req.body.rows.map((x, i) => ({
              pk: x.pk,
              cloud_version: current[i]?.cloud_version ?? first.cloud_version,
            })),
            events: [],
          },
        };
      });
      return reply.status(out.status).send(out.body as never);
    },
  );

  app.get(
    '/devices/:device/edge/state-tables/:lineage_id/rows',
    {
      schema: {
        tags: ['write-back'],
        description:
          "The cloud's rows of the lineage, by key, with their cloud_version and what the device confirmed.",
        params: stateTableParams,
        querystring: z.object({
          page: z.coerce.number().int().min(1).max(1_000_000).optional(),
          limit: z.coerce.number().int().min(1).max(500).optional(),
        }),
      },
    },
    async (req) => {
      const { project_id, device, lineage_id } = req.params;
      const l = await ownedLineage(deps, project_id, lineage_id, device);
      return listCloudRows(deps.store.db, {
        lineage_id: l.lineage_id,
        ...(req.query.page ? { page: req.query.page } : {}),
        ...(req.query.limit ? { limit: req.query.limit } : {}),
      });
    },
  );
}
