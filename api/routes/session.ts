/**
 * `GET /core/api/v1/session`: what the bearer token may do (its name, project and permissions),
 * so a client signed in with a token alone (the operator console) knows which project to read and
 * which buttons to offer. It reveals nothing a token holder could not learn by trying.
 */
import type { FastifyInstance } from 'fastify';
import { MANAGE, type TokenBook } from '../auth/tokens';
import { ApiError } from '../errors';

export type SessionView = Readonly<{
  name: string;
  project_id: string;
  permissions: string[];
  can_manage: boolean;
}>;

export async function registerSessionRoute(
  app: FastifyInstance,
  deps: Readonly<{ tokens: TokenBook }>,
): Promise<void> {
  app.get(
    '/core/api/v1/session',
    {
      schema: {
        tags: ['session'],
        description: "The bearer token's name, project and permissions.",
      },
    },
    async (req): Promise<SessionView> => {
      const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
      if (!m)
        throw new ApiError(401, 'unauthenticated', 'missing bearer token (Authorization: Bearer <token>)');
      const grant = deps.tokens.lookup(m[1]!);
      if (!grant) throw new ApiError(401, 'unauthenticated', 'unknown bearer token');
      return {
        name: grant.name,
        project_id: grant.project_id,
        permissions: [...grant.permissions],
        can_manage: grant.permissions.includes(MANAGE),
      };
    },
  );
}
