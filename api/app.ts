import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import swagger from '@fastify/swagger';
import {
  type ZodTypeProvider,
  hasZodFastifySchemaValidationErrors,
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
} from 'fastify-type-provider-zod';
import { z } from 'zod';
import { isDomainError } from '../domain/shared/errors';
import type { ReadStore } from '../projections';
import type { Logger } from '../infra/log';
import type { Metrics } from '../infra/metrics';
import type { CommandService } from '../worker/commands';
import type { RegistryCommandService } from '../worker/registry-commands';
import { MANAGE, type TokenBook, type TokenGrant } from './auth/tokens';
import { registerConsole } from './console';
import { ApiError, fromDomain } from './errors';
import type { ReadinessCheck } from './health';
import { IdempotencyStore } from './idempotency';
import { registerStrictJsonParser } from './json-body';
import { registerReadStoreGauges } from './metrics';
import { type EventReader, registerAuditRoutes } from './routes/audit';
import { type PolicyStore, registerEdgeRoutes } from './routes/edge';
import { registerRegistryRoutes } from './routes/registry';
import { registerTelemetryRoutes } from './routes/telemetry';
import { registerWriteBackRoutes } from './routes/write-back';
import { type UploadDeps, registerUploadRoutes } from './routes/uploads';

export type { ReadinessCheck } from './health';
export type { EventReader } from './routes/audit';

export type AppDeps = Readonly<{
  store: ReadStore;
  commands: CommandService;
  /** Read access to the event store, for the audit endpoint. */
  events: EventReader;
  tokens: TokenBook;
  metrics: Metrics;
  log?: Logger;
  readiness?: ReadinessCheck;
  policies?: PolicyStore;
  /** Registry reviews, consolidation and fleets (coalescing). */
  registry?: RegistryCommandService;
  /** The upload endpoint of the secondary flow (absent: no upload route). */
  uploads?: UploadDeps;
  /** Serve HTTPS with this certificate and key (PEM). */
  https?: Readonly<{ cert: Buffer; key: Buffer }>;
}>;

declare module 'fastify' {
  interface FastifyRequest {
    grant?: TokenGrant;
  }
}

export const API_PREFIX = '/core/api/v1/projects/:project_id';

/** Build the HTTP API (no listening here: tests use `inject`, the role calls `listen`). */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = await build(deps);
  return app as unknown as FastifyInstance;
}

async function build(deps: AppDeps) {
  const app = Fastify({
    loggerInstance: deps.log,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 4 * 1024 * 1024,
    ...(deps.https ? { https: { cert: deps.https.cert, key: deps.https.key } } : {}),
    ajv: { customOptions: { coerceTypes: true } },
  }).withTypeProvider<ZodTypeProvider>();
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  registerStrictJsonParser(app as unknown as FastifyInstance);

  await app.register(swagger, {
    openapi: {
      info: {
        title: 'Sluice API',
        version: '1',
        description: 'Governed replication of edge SQLite databases.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    transform: jsonSchemaTransform,
  });

  const idempotency = new IdempotencyStore(deps.store.db as never);
  await idempotency.migrate();
  registerReadStoreGauges(deps.metrics, deps.store);

  app.addHook('onResponse', async (req, reply) => {
    deps.metrics.apiLatency.observe(
      { route: req.routeOptions.url ?? 'unknown', method: req.method, status: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });

  app.setErrorHandler((err, _req, reply) => {
    if (err instanceof ApiError) {
      return reply
        .status(err.status)
        .send({ code: err.code, message: err.message, ...(err.details ? { details: err.details } : {}) });
    }
    if (isDomainError(err)) {
      const e = fromDomain(err);
      return reply.status(e.status).send({ code: e.code, message: e.message, details: e.details });
    }
    if (hasZodFastifySchemaValidationErrors(err)) {
      const first = err.validation[0];
      return reply.status(400).send({
        code: 'invalid_request',
        message: `${
          first?.instancePath && first.instancePath !== '/'
            ? first.instancePath
            : (err.validationContext ?? 'request')
        }: ${first?.message ?? 'invalid'}`,
        details: { issues: err.validation.map((v) => ({ path: v.instancePath, message: v.message })) },
      });
    }
    const status = (err as { statusCode?: number }).statusCode ?? 500;
    if (status >= 500) deps.log?.error({ err }, 'API request failed');
    return reply.status(status).send({
      code: status === 413 ? 'payload_too_large' : status >= 500 ? 'internal' : 'bad_request',
      message:
        status >= 500
          ? 'internal error; nothing was changed by this request, retry it'
          : (err as Error).message,
    });
  });
  app.setNotFoundHandler((req, reply) =>
    reply
      .status(404)
      .send({ code: 'route_not_found', message: `no route ${req.method} ${req.url.split('?')[0]}` }),
  );

  app.get('/healthz', { schema: { hide: true } }, async () => ({ ok: true }));
  app.get('/readyz', { schema: { hide: true } }, async (_req, reply) => {
    const checks = (await deps.readiness?.()) ?? {};
    const ok = Object.values(checks).every((c) => c.ok);
    return reply.status(ok ? 200 : 503).send({ ok, checks });
  });
  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => {
    reply.header('content-type', deps.metrics.registry.contentType);
    return deps.metrics.registry.metrics();
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  // A query parameter a route does not know is a mistake (a typo, or a filter the route does not
  // have): refuse it with invalid_request instead of silently answering unfiltered.
  app.addHook('onRoute', (route) => {
    if (!route.url.startsWith(API_PREFIX)) return;
    const schema = (route.schema ??= {});
    const q = schema.querystring;
    if (q === undefined) schema.querystring = z.object({}).strict();
    else if (q instanceof z.ZodObject) schema.querystring = q.strict();
  });

  await app.register(
    async (scope) => {
      // Permission before the body is even parsed: a read token learns nothing from a mutation's 400s.
      scope.addHook('onRequest', async (req) => {
        await authenticate(req, deps.tokens);
        if (req.method !== 'GET' && req.method !== 'HEAD') requireManage(req);
      });
      await registerEdgeRoutes(scope.withTypeProvider<ZodTypeProvider>(), { ...deps, idempotency });
      await registerAuditRoutes(scope.withTypeProvider<ZodTypeProvider>(), deps);
      await registerRegistryRoutes(scope.withTypeProvider<ZodTypeProvider>(), { ...deps, idempotency });
      await registerTelemetryRoutes(scope.withTypeProvider<ZodTypeProvider>(), deps);
      await registerWriteBackRoutes(scope.withTypeProvider<ZodTypeProvider>(), { ...deps, idempotency });
    },
    { prefix: API_PREFIX },
  );
  if (deps.uploads) await registerUploadRoutes(app as unknown as FastifyInstance, deps.uploads);
  await registerConsole(app as unknown as FastifyInstance, deps);
  await app.ready();
  return app;
}

/** Every mutation needs PROJECT_CAN_MANAGE_DEVICES; a read token is refused before anything else. */
function requireManage(req: FastifyRequest): void {
  if (!req.grant?.permissions.includes(MANAGE)) {
    throw new ApiError(403, 'forbidden', `this token cannot change anything; it needs ${MANAGE}`);
  }
}

/** Every project route needs a bearer token for that project; another project's reads as "not found". */
async function authenticate(req: FastifyRequest, tokens: TokenBook): Promise<void> {
  const header = req.headers.authorization ?? '';
  const m = /^Bearer\s+(\S+)$/i.exec(header);
  if (!m) throw new ApiError(401, 'unauthenticated', 'missing bearer token (Authorization: Bearer <token>)');
  const grant = tokens.lookup(m[1]!);
  if (!grant) throw new ApiError(401, 'unauthenticated', 'unknown bearer token');
  const projectId = (req.params as { project_id?: string }).project_id;
  if (projectId !== grant.project_id) throw new ApiError(404, 'not_found', 'project not found');
  req.grant = grant;
}

export type Reply = FastifyReply;
