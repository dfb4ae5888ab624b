import { z } from 'zod';

/** Request and response shapes shared by the route files (one definition, one OpenAPI shape). */
export const projectParams = z.object({ project_id: z.string().uuid() });
export const lineageParams = projectParams.extend({ lineage_id: z.string().uuid() });
export const reviewParams = projectParams.extend({ review_id: z.string().uuid() });
export const paging = {
  page: z.coerce.number().int().min(1).max(1_000_000).optional(),
  limit: z.coerce.number().int().min(1).max(500).optional(),
};
export const idemHeaders = z.object({ 'idempotency-key': z.string().min(1).max(200) }).passthrough();
export const columnAction = z.object({
  column: z.string().min(1),
  action: z.enum(['mirror', 'map', 'ignore', 'defer', 'auto_create_and_map']),
  mirror_column_name: z.string().min(1).max(63).optional(),
  data_point: z.string().min(1).max(200).optional(),
});
export const reviewBody = z.object({
  action_version: z.number().int().positive(),
  column_actions: z.array(columnAction).max(2000).optional(),
  reason: z.string().max(2000).optional(),
});
export const error = z.object({
  code: z.string(),
  message: z.string(),
  details: z.record(z.string(), z.unknown()).optional(),
});
