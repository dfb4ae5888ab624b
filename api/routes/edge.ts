import type {
  FastifyBaseLogger,
  FastifyInstance,
  FastifyRequest,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
} from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import {
  type ReadStore,
  getLineage,
  getReview,
  listLineages,
  lineageExists,
  listMirrorRows,
  listPendingControls,
  listRejections,
  listReviews,
  listSegments,
  listStagedRows,
} from '../../projections';
import { isDomainError } from '../../domain/shared/errors';
import { schemaDiff } from '../../domain/lineage/diff';
import type { SchemaColumns } from '../../domain/protocol/fingerprint';
import { findVerify, lastVerify } from '../../domain/lineage/state';
import { type Policy, policyPatchSchema } from '../../domain/policy/policy';
import type { CommandService, CommandVerb } from '../../worker/commands';
import type { RegistryCommandService } from '../../worker/registry-commands';
import { ApiError, fromDomain, notFound } from '../errors';
import { IdempotencyStore } from '../idempotency';
import {
  error,
  idemHeaders,
  lineageParams,
  paging,
  projectParams,
  reviewBody,
  reviewParams,
} from './schemas';

type App = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  ZodTypeProvider
>;

export type PolicyStore = Readonly<{
  policy(projectId: string): Promise<Policy>;
  setPolicy(projectId: string, patch: Partial<Policy>): Promise<Policy>;
}>;

type Deps = Readonly<{
  store: ReadStore;
  commands: CommandService;
  idempotency: IdempotencyStore;
  policies?: PolicyStore;
  registry?: RegistryCommandService;
}>;

const commandResult = z.object({
  lineage_id: z.string(),
  version: z.number(),
  events: z.array(z.object({ id: z.string(), type: z.string() })),
  /** Review verbs: the review after the command, so a client can quote its next action_version. */
  review: z.object({ review_id: z.string(), status: z.string(), action_version: z.number() }).optional(),
});
const deleteBody = z.object({ reason: z.string().min(1).max(2000).optional() }).nullish();
const resyncBody = z
  .object({ buckets: z.array(z.number().int().min(0).max(255)).min(1).max(256).nullable().optional() })
  .nullish();

/**
 * Run a mutation once per Idempotency-Key: a repeat with the same body returns the stored answer
 * (and has no second effect); the same key with another body is refused with 422. The token's
 * permission to mutate was checked before the body was validated (api/app.ts).
 */
export async function idempotent(
  deps: Pick<Deps, 'idempotency'>,
  req: FastifyRequest,
  projectId: string,
  run: (decisionKey: string) => Promise<{ status: number; body: unknown }>,
): Promise<{ status: number; body: unknown }> {
  const key = (req.headers['idempotency-key'] as string | undefined) ?? '';
  const hash = IdempotencyStore.requestHash(req.method, req.url.split('?')[0]!, req.body);
  const claim = await deps.idempotency.claim(projectId, key, hash);
  if (claim.kind === 'replay') return claim.response;
  if (claim.kind === 'mismatch')
    throw new ApiError(
      422,
      'idempotency_key_reused',
      'this Idempotency-Key was used with another request; use a new key',
    );
  if (claim.kind === 'in_progress')
    throw new ApiError(
      409,
      'idempotency_in_progress',
      'a request with this Idempotency-Key is still running; retry shortly',
    );
  try {
    const out = await run(`${projectId}:${key}`);
    await deps.idempotency.complete(projectId, key, out);
    return out;
  } catch (err) {
    if (isDomainError(err) || err instanceof ApiError) {
      const e = isDomainError(err) ? fromDomain(err) : err;
      const out = {
        status: e.status,
        body: { code: e.code, message: e.message, ...(e.details ? { details: e.details } : {}) },
      };
      await deps.idempotency.complete(projectId, key, out);
      return out;
    }
    await deps.idempotency.release(projectId, key);
    throw err;
  }
}

export async function registerEdgeRoutes(app: App, deps: Deps): Promise<void> {
  const db = deps.store.db;
  const base = '/edge';

  app.get(
    `${base}/lineages`,
    {
      schema: {
        tags: ['lineages'],
        params: projectParams,
        querystring: z.object({
          ...paging,
          device_id: z.string().max(200).optional(),
          fleet_id: z.string().uuid().optional(),
          status: z.enum(['active', 'paused', 'deleted']).optional(),
        }),
      },
    },
    async (req) =>
      listLineages(db, {
        project_id: req.params.project_id,
        ...(req.query.device_id ? { device: req.query.device_id } : {}),
        ...(req.query.fleet_id ? { fleet_id: req.query.fleet_id } : {}),
        ...(req.query.status ? { status: req.query.status } : {}),
        ...(req.query.page ? { page: req.query.page } : {}),
        ...(req.query.limit ? { limit: req.query.limit } : {}),
      }),
  );

  app.get(
    `${base}/lineages/:lineage_id`,
    { schema: { tags: ['lineages'], params: lineageParams } },
    async (req) => {
      const l = await getLineage(db, req.params.project_id, req.params.lineage_id);
      if (!l) throw notFound('lineage');
      return l;
    },
  );

  app.get(
    `${base}/lineages/:lineage_id/staged-rows`,
    {
      schema: {
        tags: ['lineages'],
        params: lineageParams,
        querystring: z.object({
          ...paging,
          after: z.string().max(200).optional(),
          after_commit_seq: z.coerce.number().int().nonnegative().optional(),
        }),
      },
    },
    async (req) => {
      const l = await getLineage(db, req.params.project_id, req.params.lineage_id);
      if (!l) throw notFound('lineage');
      try {
        return await listStagedRows(db, {
          project_id: req.params.project_id,
          lineage_id: req.params.lineage_id,
          ...(req.query.page ? { page: req.query.page } : {}),
          ...(req.query.limit ? { limit: req.query.limit } : {}),
          ...(req.query.after ? { after: req.query.after } : {}),
          ...(req.query.after_commit_seq !== undefined
            ? { after_commit_seq: req.query.after_commit_seq }
            : {}),
        });
      } catch (err) {
        if (err instanceof RangeError) throw new ApiError(400, 'invalid_cursor', err.message);
        throw err;
      }
    },
  );

  app.get(
    `${base}/lineages/:lineage_id/mirror-rows`,
    {
      schema: {
        tags: ['lineages'],
        description:
          'The lineage’s mirror rows by key: {items: [{key, row, device_id, source_commit_seq, ' +
          'source_journal_epoch}], total, page, limit, next_cursor, table, columns}. Page with `after` ' +
          '(the previous page’s next_cursor: reads by key, at any depth) or `page`. `total` is null ' +
          'unless `count=true` (counting scans the lineage’s rows).',
        params: lineageParams,
        querystring: z.object({
          ...paging,
          after: z.string().max(20_000).optional(),
          count: z.enum(['true', 'false']).optional(),
        }),
      },
    },
    async (req) => {
      if (!(await lineageExists(db, req.params.project_id, req.params.lineage_id))) throw notFound('lineage');
      try {
        return await listMirrorRows(db, {
          project_id: req.params.project_id,
          lineage_id: req.params.lineage_id,
          ...(req.query.page ? { page: req.query.page } : {}),
          ...(req.query.limit ? { limit: req.query.limit } : {}),
          ...(req.query.after ? { after: req.query.after } : {}),
          count: req.query.count === 'true',
        });
      } catch (err) {
        if (err instanceof RangeError) throw new ApiError(400, 'invalid_cursor', err.message);
        throw err;
      }
    },
  );

  app.delete(
    `${base}/lineages/:lineage_id`,
    {
      schema: {
        tags: ['lineages'],
        description: 'End the lineage (optional JSON body {reason}); a later batch starts a new one.',
        params: lineageParams,
        headers: idemHeaders,
        body: deleteBody,
        response: { 200: commandResult, '4xx': error },
      },
    },
    async (req, reply) => {
      const { project_id, lineage_id } = req.params;
      const reason = req.body?.reason;
      const out = await idempotent(deps, req, project_id, async (key) => {
        const l = await getLineage(db, project_id, lineage_id);
        if (!l || l.status === 'deleted') throw notFound('lineage');
        return command(deps.commands, 'lineage.delete', {
          project_id,
          lineage_id,
          ...(reason ? { reason } : {}),
          idempotency_key: key,
          actor: req.grant!.name,
        });
      });
      return reply.status(out.status).send(out.body as never);
    },
  );

  app.post(
    `${base}/lineages/:lineage_id/reset-materialization`,
    {
      schema: {
        tags: ['lineages'],
        params: lineageParams,
        headers: idemHeaders,
        response: { 200: commandResult, '4xx': error },
      },
    },
    async (req, reply) => {
      const { project_id, lineage_id } = req.params;
      const out = await idempotent(deps, req, project_id, async (key) => {
        const l = await getLineage(db, project_id, lineage_id);
        if (!l || l.status === 'deleted') throw notFound('lineage');
        return command(deps.commands, 'lineage.reset-materialization', {
          project_id,
          lineage_id,
          idempotency_key: key,
          actor: req.grant!.name,
        });
      });
      return reply.status(out.status).send(out.body as never);
    },
  );

  app.post(
    `${base}/lineages/:lineage_id/verify`,
    {
      schema: {
        tags: ['lineages'],
        description:
          'Ask the device for digests of its table and compare them with the mirror (docs/verify.md). ' +
          'The answer names the verify_id; GET …/verify follows its outcome.',
        params: lineageParams,
        headers: idemHeaders,
        response: { 200: commandResult.extend({ verify_id: z.string().optional() }), '4xx': error },
      },
    },
    async (req, reply) => {
      const { project_id, lineage_id } = req.params;
      const out = await idempotent(deps, req, project_id, async (key) => {
        const l = await getLineage(db, project_id, lineage_id);
        if (!l || l.status === 'deleted') throw notFound('lineage');
        return command(deps.commands, 'lineage.verify', {
          project_id,
          lineage_id,
          trigger: 'operator',
          idempotency_key: key,
          actor: req.grant!.name,
        });
      });
      return reply.status(out.status).send(out.body as never);
    },
  );

  app.get(
    `${base}/lineages/:lineage_id/verify`,
    {
      schema: {
        tags: ['lineages'],
        description:
          'The last verify of the lineage (or the one named by ?verify_id), as the lineage records it.',
        params: lineageParams,
        querystring: z.object({ verify_id: z.string().uuid().optional() }),
      },
    },
    async (req) => {
      const { project_id, lineage_id } = req.params;
      const l = await getLineage(db, project_id, lineage_id);
      if (!l) throw notFound('lineage');
      const state = await deps.commands.lineageState(lineage_id);
      if (state.status !== 'registered' || state.project_id !== project_id) throw notFound('lineage');
      // A telemetry lineage never verifies: no run to show.
      if (state.kind !== 'rows') throw notFound('verify');
      const v = req.query.verify_id ? findVerify(state, req.query.verify_id) : lastVerify(state);
      if (!v) throw notFound('verify');
      return { lineage_id, ...v };
    },
  );

  app.get(
    `${base}/lineages/:lineage_id/observed-schema`,
    {
      schema: {
        tags: ['lineages'],
        description:
          'The last schema the device announced on sync/schema/observe (advisory; schema_columns null when ' +
          'the device sent only the hash), as the lineage records it.',
        params: lineageParams,
      },
    },
    async (req) => {
      const { project_id, lineage_id } = req.params;
      const state = await deps.commands.lineageState(lineage_id);
      if (state.status !== 'registered' || state.project_id !== project_id) throw notFound('lineage');
      if (!state.observed_schema) throw notFound('observed schema');
      return { lineage_id, ...state.observed_schema };
    },
  );

  app.post(
    `${base}/lineages/:lineage_id/resync`,
    {
      schema: {
        tags: ['lineages'],
        description:
          'Ask the device to send its table again (optional JSON body {buckets}: only those key buckets); ' +
          'rows the device no longer holds are swept from the mirror.',
        params: lineageParams,
        headers: idemHeaders,
        body: resyncBody,
        response: { 200: commandResult, '4xx': error },
      },
    },
    async (req, reply) => {
      const { project_id, lineage_id } = req.params;
      const buckets = req.body?.buckets ?? null;
      const out = await idempotent(deps, req, project_id, async (key) => {
        const l = await getLineage(db, project_id, lineage_id);
        if (!l || l.status === 'deleted') throw notFound('lineage');
        return command(deps.commands, 'lineage.resync', {
          project_id,
          lineage_id,
          buckets,
          idempotency_key: key,
          actor: req.grant!.name,
        });
      });
      return reply.status(out.status).send(out.body as never);
    },
  );

  app.get(
    `${base}/pending-controls`,
    {
      schema: {
        tags: ['controls'],
        params: projectParams,
        querystring: z.object({
          ...paging,
          lineage_id: z.string().uuid().optional(),
          status: z.enum(['pending', 'acknowledged', 'all']).optional(),
        }),
      },
    },
    async (req) =>
      listPendingControls(db, {
        project_id: req.params.project_id,
        ...(req.query.lineage_id ? { lineage_id: req.query.lineage_id } : {}),
        ...(req.query.status ? { status: req.query.status } : {}),
        ...(req.query.page ? { page: req.query.page } : {}),
        ...(req.query.limit ? { limit: req.query.limit } : {}),
      }),
  );

  app.get(`${base}/policy`, { schema: { tags: ['policy'], params: projectParams } }, async (req) => {
    if (!deps.policies) throw new ApiError(503, 'policy_unavailable', 'this API process has no policy store');
    return deps.policies.policy(req.params.project_id);
  });

  app.patch(
    `${base}/policy`,
    { schema: { tags: ['policy'], params: projectParams, headers: idemHeaders, body: policyPatchSchema } },
    async (req, reply) => {
      const policies = deps.policies;
      if (!policies) throw new ApiError(503, 'policy_unavailable', 'this API process has no policy store');
      const out = await idempotent(deps, req, req.params.project_id, async () => {
        const policy = await policies.setPolicy(req.params.project_id, req.body as Partial<Policy>);
        // Coalescing named: move device-scoped approvals into the scope's coalesced tables (idempotent,
        // so a retried PATCH finishes what a failed one started).
        if (deps.registry && req.body.schema_coalescing_mode && policy.schema_coalescing_mode !== 'none') {
          await deps.registry.consolidate(req.params.project_id, policy, req.grant!.name);
        }
        return { status: 200, body: policy };
      });
      return reply.status(out.status).send(out.body as never);
    },
  );

  app.get(
    `${base}/schema-reviews`,
    {
      schema: {
        tags: ['reviews'],
        params: projectParams,
        querystring: z.object({
          ...paging,
          status: z.enum(['queued', 'in_review', 'approved', 'rejected']).optional(),
          lineage_id: z.string().uuid().optional(),
          fleet_id: z.string().uuid().optional(),
        }),
      },
    },
    async (req) =>
      listReviews(db, {
        project_id: req.params.project_id,
        ...(req.query.fleet_id ? { fleet_id: req.query.fleet_id } : {}),
        ...(req.query.status ? { status: req.query.status } : {}),
        ...(req.query.lineage_id ? { lineage_id: req.query.lineage_id } : {}),
        ...(req.query.page ? { page: req.query.page } : {}),
        ...(req.query.limit ? { limit: req.query.limit } : {}),
      }),
  );

  app.get(
    `${base}/schema-reviews/:review_id`,
    { schema: { tags: ['reviews'], params: reviewParams } },
    async (req) => {
      const r = await getReview(db, req.params.project_id, req.params.review_id);
      if (!r) throw notFound('schema review');
      const l = await getLineage(db, req.params.project_id, r.lineage_id);
      const approvedHash = l?.approved_schema_hash ?? null;
      const approved = l?.schema_versions.find((v) => v.schema_hash === approvedHash)?.schema_columns ?? null;
      return {
        ...r,
        // Against the approved schema (issue: a review shows what it changes, and what is bound now).
        diff: schemaDiff(
          (r.schema_columns as SchemaColumns | null) ?? null,
          (approved as SchemaColumns | null) ?? null,
          approvedHash,
        ),
        current_bindings: (l?.bindings ?? []).map((b) => ({
          column: b.column,
          action: b.action,
          target: b.target,
          affinity: b.affinity,
          pk_ordinal: b.pk_ordinal,
        })),
      };
    },
  );

  const verbs: [string, CommandVerb][] = [
    ['claim', 'review.claim'],
    ['approve', 'review.approve'],
    ['reject', 'review.reject'],
    ['reopen', 'review.reopen'],
  ];
  for (const [path, verb] of verbs) {
    app.post(
      `${base}/schema-reviews/:review_id/${path}`,
      {
        schema: {
          tags: ['reviews'],
          params: reviewParams,
          headers: idemHeaders,
          body: reviewBody,
          response: { 200: commandResult, '4xx': error },
        },
      },
      async (req, reply) => {
        const { project_id, review_id } = req.params;
        const out = await idempotent(deps, req, project_id, async (key) => {
          const review = await getReview(db, project_id, review_id);
          if (!review) throw notFound('schema review');
          return command(deps.commands, verb, {
            project_id,
            lineage_id: review.lineage_id,
            review_id,
            action_version: req.body.action_version,
            ...(req.body.column_actions ? { column_actions: req.body.column_actions } : {}),
            ...(verb === 'review.reject' ? { reason: req.body.reason ?? '' } : {}),
            idempotency_key: key,
            actor: req.grant!.name,
          });
        });
        return reply.status(out.status).send(out.body as never);
      },
    );
  }

  app.get(
    `${base}/rejections`,
    {
      schema: {
        tags: ['ingest'],
        params: projectParams,
        querystring: z.object({
          ...paging,
          code: z.string().max(64).optional(),
          device: z.string().max(300).optional(),
        }),
      },
    },
    async (req) =>
      listRejections(db, {
        project_id: req.params.project_id,
        ...(req.query.code ? { code: req.query.code } : {}),
        ...(req.query.device ? { device_key: req.query.device } : {}),
        ...(req.query.page ? { page: req.query.page } : {}),
        ...(req.query.limit ? { limit: req.query.limit } : {}),
      }),
  );

  app.get(
    `${base}/segments`,
    {
      schema: {
        tags: ['ingest'],
        params: projectParams,
        querystring: z.object({ ...paging, lineage_id: z.string().uuid().optional() }),
      },
    },
    async (req) =>
      listSegments(db, {
        project_id: req.params.project_id,
        ...(req.query.lineage_id ? { lineage_id: req.query.lineage_id } : {}),
        ...(req.query.page ? { page: req.query.page } : {}),
        ...(req.query.limit ? { limit: req.query.limit } : {}),
      }),
  );
}

async function command(service: CommandService, verb: CommandVerb, input: Record<string, unknown>) {
  const r = await service.run(verb, input);
  const review =
    typeof input.review_id === 'string' && r.state.status === 'registered'
      ? r.state.reviews.find((x) => x.review_id === input.review_id)
      : undefined;
  const requested = r.events.find((e) => e.type === 'VerifyRequested');
  return {
    status: 200,
    body: {
      lineage_id: r.lineage_id,
      version: r.version,
      events: r.events.map((e) => ({ id: e.id, type: e.type })),
      ...(requested?.type === 'VerifyRequested' ? { verify_id: requested.data.verify_id } : {}),
      ...(review
        ? {
            review: {
              review_id: review.review_id,
              status: review.status,
              action_version: review.action_version,
            },
          }
        : {}),
    },
  };
}
