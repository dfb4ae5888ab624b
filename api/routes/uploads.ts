import type { FastifyInstance } from 'fastify';
import type { ObjectStore } from '@nats-io/obj';
import { MAX_UPLOAD_BYTES } from '../../domain/protocol/contracts';
import { isUploadContentError, validatedChunks } from '../../infra/uploads/jsonl';
import type { UploadObjectMeta } from '../../infra/uploads/store';
import { verifyUploadToken } from '../../infra/uploads/token';
import type { Logger } from '../../infra/log';

export type UploadDeps = Readonly<{
  store: ObjectStore;
  secret: Buffer;
  now?: () => Date;
  log?: Logger;
}>;

export const UPLOAD_PATH = '/core/api/v1/uploads/:upload_id';

const CONTENT_TYPES = ['application/zstd', 'application/octet-stream'];

/**
 * The upload endpoint of the secondary flow. No bearer token: the URL's signed token is the
 * credential (it names the device, lineage, table, upload, range and expiry). The body is
 * zstd-compressed JSONL, streamed to the object store while it is checked; a body that is not
 * valid zstd, not JSONL rows, or not what the grant allows fails the store, which keeps nothing.
 */
export async function registerUploadRoutes(app: FastifyInstance, deps: UploadDeps): Promise<void> {
  await app.register(async (scope) => {
    // The body stays a stream: never buffered, whatever its size.
    scope.addContentTypeParser(CONTENT_TYPES, (_req, payload, done) => done(null, payload));

    scope.put<{ Params: { upload_id: string }; Querystring: { token?: string } }>(
      UPLOAD_PATH,
      { schema: { hide: true } },
      async (req, reply) => {
        const refuse = (status: number, code: string, message: string) =>
          // The rest of a refused body is not read: close the connection instead of draining it.
          reply.header('connection', 'close').status(status).send({ code, message });
        const check = verifyUploadToken(req.query.token ?? '', deps.secret, deps.now?.() ?? new Date());
        if (!check.ok) return refuse(403, check.code, `${check.message}; nothing was stored`);
        const claims = check.claims;
        if (claims.upload_id !== req.params.upload_id) {
          return refuse(403, 'upload_url_invalid', 'the token is for another upload; nothing was stored');
        }
        const declared = Number(req.headers['content-length'] ?? 0);
        if (declared > MAX_UPLOAD_BYTES) {
          return refuse(
            413,
            'upload_too_large',
            `uploads are at most ${MAX_UPLOAD_BYTES} bytes; nothing was stored`,
          );
        }
        const existing = await deps.store.info(claims.upload_id);
        if (existing && !existing.deleted) {
          const meta = existing.metadata as Partial<UploadObjectMeta> | undefined;
          if (meta?.device_key !== claims.device_key || meta.lineage_id !== claims.lineage_id) {
            return refuse(409, 'upload_exists', 'an object with this upload id exists for another device');
          }
          // A repeated PUT whose first answer was lost: the object is already whole.
          return reply.header('connection', 'close').status(200).send({
            upload_id: claims.upload_id,
            size: existing.size,
            digest: existing.digest,
            already_stored: true,
          });
        }
        const metadata: UploadObjectMeta = {
          device_key: claims.device_key,
          lineage_id: claims.lineage_id,
          source_table: claims.source_table,
          journal_epoch: claims.journal_epoch,
          row_count: String(claims.row_count),
        };
        const body = req.body as AsyncIterable<Uint8Array>;
        try {
          const info = await deps.store.put(
            { name: claims.upload_id, metadata },
            ReadableStream.from(validatedChunks(body, claims)),
          );
          deps.log?.info(
            {
              upload_id: claims.upload_id,
              device: claims.device_key,
              bytes: info.size,
              rows: claims.row_count,
            },
            'upload stored',
          );
          return reply.status(201).send({
            upload_id: claims.upload_id,
            size: info.size,
            digest: info.digest,
            rows: claims.row_count,
            already_stored: false,
          });
        } catch (err) {
          if (isUploadContentError(err)) {
            deps.log?.warn(
              { upload_id: claims.upload_id, device: claims.device_key, code: err.code, reason: err.message },
              'upload refused',
            );
            const status = err.code === 'upload_too_large' ? 413 : 400;
            return refuse(
              status,
              err.code,
              `${err.message}; nothing was stored, the device may upload again`,
            );
          }
          throw err;
        }
      },
    );
  });
}
