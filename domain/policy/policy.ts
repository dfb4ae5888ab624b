import { z } from 'zod';

export const policySchema = z.object({
  schema_coalescing_mode: z.enum(['none', 'project', 'fleet']).default('none'),
  max_pending_rows_per_lineage: z.number().int().positive().default(100_000),
  max_pending_bytes_per_lineage: z
    .number()
    .int()
    .positive()
    .default(1024 ** 3),
  resume_threshold_percent: z.number().int().min(1).max(99).default(80),
  allow_additive_continue: z.boolean().default(false),
  allow_auto_create_device_data_points: z.boolean().default(false),
  circuit_breaker_threshold: z.number().int().positive().default(5),
});
export type Policy = z.infer<typeof policySchema>;

export const DEFAULT_POLICY: Policy = policySchema.parse({});
