import { z } from 'zod';

const fields = {
  schema_coalescing_mode: z.enum(['none', 'project', 'fleet']),
  max_pending_rows_per_lineage: z.number().int().positive(),
  max_pending_bytes_per_lineage: z.number().int().positive(),
  resume_threshold_percent: z.number().int().min(1).max(99),
  allow_additive_continue: z.boolean(),
  allow_auto_create_device_data_points: z.boolean(),
  circuit_breaker_threshold: z.number().int().positive(),
  /** Minutes between scheduled verify runs of each active row lineage; 0 = no schedule (docs/verify.md). */
  verify_interval_minutes: z.number().int().min(0).max(525_600),
};

/** A project's policy; every field has the SPEC default. */
export const policySchema = z.object({
  schema_coalescing_mode: fields.schema_coalescing_mode.default('none'),
  max_pending_rows_per_lineage: fields.max_pending_rows_per_lineage.default(100_000),
  max_pending_bytes_per_lineage: fields.max_pending_bytes_per_lineage.default(1024 ** 3),
  resume_threshold_percent: fields.resume_threshold_percent.default(80),
  allow_additive_continue: fields.allow_additive_continue.default(false),
  allow_auto_create_device_data_points: fields.allow_auto_create_device_data_points.default(false),
  circuit_breaker_threshold: fields.circuit_breaker_threshold.default(5),
  verify_interval_minutes: fields.verify_interval_minutes.default(0),
});
export type Policy = z.infer<typeof policySchema>;

/** A change to a policy: only the fields given change (no defaults fill in the rest). */
export const policyPatchSchema = z.object(fields).partial().strict();
export type PolicyPatch = z.infer<typeof policyPatchSchema>;

export const DEFAULT_POLICY: Policy = policySchema.parse({});
