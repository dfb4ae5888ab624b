/**
 * Registry coalescing routes (SPEC §7): registry entries, registry reviews and their verbs,
 * coalesced mirror tables, devices and their fleets. Mutations quote `action_version` and need an
 * `Idempotency-Key`, as the schema-review routes do.
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
  getRegistryReview,
  listCoalescedMirrors,
  listDevices,
  listRegistry,
  listRegistryReviews,
} from '../../projections';
import type { Policy } from '../../domain/policy/policy';
import type { RegistryCommandService } from '../../worker/registry-commands';
import { ApiError, notFound } from '../errors';
import type { IdempotencyStore } from '../idempotency';
import { idempotent } from './edge';
import { error, idemHeaders, paging, projectParams, reviewBody, reviewParams } from './schemas';

type App = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  ZodTypeProvider
>;

type Deps = Readonly<{
  store: ReadStore;
  idempotency: IdempotencyStore;
  registry?: RegistryCommandService;
  policies?: { policy(projectId: string): Promise<Policy> };
}>;

const registryResult = z.object({
  registry_id: z.string(),
  version: z.number(),
  events: z.array(z.object({ id: z.string(), type: z.string() })),
  review: z.object({ review_id: z.string(), status: z.string(), action_version: z.number() }).optional(),
});

const opt = <K extends string, V>(k: K, v: V | undefined) =>
  v === undefined ? {} : ({ [k]: v } as Record<K, V>);

function service(deps: Deps): RegistryCommandService {
  if (!deps.registry) {
    throw new ApiError(
      503,
      'registry_unavailable',
      'this API process has no registry service; nothing was changed',
    );
  }
  return deps.registry;
}

export async function registerRegistryRoutes(app: App, deps: Deps): Promise<void> {
  const db = deps.store.db;
  const base = '/edge';

  app.get(
    `${base}/registry`,
    {
      schema: {
        tags: ['registry'],
        description: 'Registry entries: one per (scope, source_table, schema_hash) of a coalescing project.',
        params: projectParams,
        querystring: z.object({
          ...paging,
          status: z.enum(['pending', 'approved', 'rejected']).optional(),
          source_table: z.string().max(300).optional(),
          scope: z.enum(['project', 'fleet']).optional(),
          fleet_id: z.string().uuid().optional(),
        }),
      },
    },
    async (req) =>
      listRegistry(db, {
        project_id: req.params.project_id,
        ...opt('status', req.query.status),
        ...opt('source_table', req.query.source_table),
        ...opt('scope', req.query.scope),
        ...opt('fleet_id', req.query.fleet_id),
        ...opt('page', req.query.page),
        ...opt('limit', req.query.limit),
      }),
  );

  app.get(
    `${base}/registry-reviews`,
    {
      schema: {
        tags: ['registry'],
        params: projectParams,
        querystring: z.object({
          ...paging,
          status: z.enum(['queued', 'in_review', 'approved', 'rejected', 'abandoned']).optional(),
          registry_id: z
            .string()
            .regex(/^[0-9a-f]{64}$/)
            .optional(),
          source_table: z.string().max(300).optional(),
          fleet_id: z.string().uuid().optional(),
        }),
      },
    },
    async (req) =>
      listRegistryReviews(db, {
        project_id: req.params.project_id,
        ...opt('status', req.query.status),
        ...opt('registry_id', req.query.registry_id),
        ...opt('source_table', req.query.source_table),
        ...opt('fleet_id', req.query.fleet_id),
        ...opt('page', req.query.page),
        ...opt('limit', req.query.limit),
      }),
  );

  app.get(
    `${base}/registry-reviews/:review_id`,
    { schema: { tags: ['registry'], params: reviewParams } },
    async (req) => {
      const r = await getRegistryReview(db, req.params.project_id, req.params.review_id);
      if (!r) throw notFound('registry review');
      return r;
    },
  );

  const verbs = [
    ['claim', 'registry.claim'],
    ['approve', 'registry.approve'],
    ['reject', 'registry.reject'],
    ['abandon', 'registry.abandon'],
  ] as const;
  for (const [path, verb] of verbs) {
    app.post(
      `${base}/registry-reviews/:review_id/${path}`,
      {
        schema: {
          tags: ['registry'],
          params: reviewParams,
          headers: idemHeaders,
          body: reviewBody,
          response: { 200: registryResult, '4xx': error },
        },
      },
      async (req, reply) => {
        const { project_id, review_id } = req.params;
        const out = await idempotent(deps, req, project_id, async (key) => {
          const review = await getRegistryReview(db, project_id, review_id);
          if (!review) throw notFound('registry review');
          const r = await service(deps).review(verb, {
            project_id,
            registry_id: review.registry_id,
            review_id,
            action_version: req.body.action_version,
            ...(req.body.column_actions && verb === 'registry.approve'
              ? { column_actions: req.body.column_actions }
              : {}),
            ...(verb === 'registry.reject' || verb === 'registry.abandon'
              ? opt('reason', req.body.reason)
              : {}),
            idempotency_key: key,
            actor: req.grant!.name,
          });
          const now =
            r.state.status === 'registered'
              ? r.state.reviews.find((x) => x.review_id === review_id)
              : undefined;
          return {
            status: 200,
            body: {
              registry_id: r.registry_id,
              version: r.version,
              events: r.events.map((e) => ({ id: e.id, type: e.type })),
              ...(now
                ? {
                    review: {
                      review_id: now.review_id,
                      status: now.status,
                      action_version: now.action_version,
                    },
                  }
                : {}),
            },
          };
        });
        return reply.status(out.status).send(out.body as never);
      },
    );
  }

  app.post(
    `${base}/registry/consolidate`,
    {
      schema: {
        tags: ['registry'],
        description:
          'Move every device-scoped approval of the project into the coalesced table of its scope (idempotent).',
        params: projectParams,
        headers: idemHeaders,
      },
    },
    async (req, reply) => {
      const { project_id } = req.params;
      const out = await idempotent(deps, req, project_id, async () => {
        const policies = deps.policies;
        if (!policies) throw new ApiError(503, 'policy_unavailable', 'this API process has no policy store');
        const policy = await policies.policy(project_id);
        if (policy.schema_coalescing_mode === 'none') {
          throw new ApiError(
            409,
            'coalescing_off',
            'the project coalesces nothing (schema_coalescing_mode none); set it with PATCH /policy first',
          );
        }
        return { status: 200, body: await service(deps).consolidate(project_id, policy, req.grant!.name) };
      });
      return reply.status(out.status).send(out.body as never);
    },
  );

  app.get(
    `${base}/coalesced-mirrors`,
    {
      schema: {
        tags: ['registry'],
        params: projectParams,
        querystring: z.object({
          ...paging,
          source_table: z.string().max(300).optional(),
          fleet_id: z.string().uuid().optional(),
        }),
      },
    },
    async (req) =>
      listCoalescedMirrors(db, {
        project_id: req.params.project_id,
        ...opt('source_table', req.query.source_table),
        ...opt('fleet_id', req.query.fleet_id),
        ...opt('page', req.query.page),
        ...opt('limit', req.query.limit),
      }),
  );

  app.get(
    `${base}/devices`,
    {
      schema: {
        tags: ['devices'],
        params: projectParams,
        querystring: z.object({ ...paging, fleet_id: z.string().uuid().optional() }),
      },
    },
    async (req) =>
      listDevices(db, {
        project_id: req.params.project_id,
        ...opt('fleet_id', req.query.fleet_id),
        ...opt('page', req.query.page),
        ...opt('limit', req.query.limit),
      }),
  );

  app.put(
    `${base}/devices/:device/fleet`,
    {
      schema: {
        tags: ['devices'],
        description: 'Put a device (id or name) in a fleet, or in none with {"fleet_id": null}.',
        params: projectParams.extend({ device: z.string().min(1).max(300) }),
        headers: idemHeaders,
        body: z.object({ fleet_id: z.string().uuid().nullable() }),
      },
    },
    async (req, reply) => {
      const { project_id, device } = req.params;
      const out = await idempotent(deps, req, project_id, async () => ({
        status: 200,
        body: await service(deps).assignFleet({
          project_id,
          device,
          fleet_id: req.body.fleet_id,
          actor: req.grant!.name,
        }),
      }));
      return reply.status(out.status).send(out.body as never);
    },
  );
}
