/** Stable error codes a person or a script can act on (API `code`, CLI exit, NATS reply). */
export const DOMAIN_ERROR_CODES = {
  not_found: 404,
  lineage_deleted: 410,
  review_not_found: 404,
  illegal_transition: 409,
  stale_action_version: 409,
  invalid_column_actions: 422,
  unknown_control_id: 422,
  duplicate_batch_seq: 422,
  stale_batch_seq: 422,
  invalid_command: 400,
  invalid_rows: 422,
  not_cloud_authoritative: 409,
  schema_not_approved: 409,
  write_back_backlog: 409,
  unknown_upload: 422,
  invalid_upload: 422,
  upload_mismatch: 422,
  upload_chunk_out_of_order: 422,
  upload_content_invalid: 422,
  batch_id_conflict: 422,
  reason_required: 400,
  schema_columns_missing: 409,
  verify_unavailable: 409,
  unknown_verify_id: 422,
  verify_mismatch: 422,
  resync_unavailable: 409,
} as const;
export type DomainErrorCode = keyof typeof DOMAIN_ERROR_CODES;

export class DomainError extends Error {
  override readonly name = 'DomainError';
  constructor(
    readonly code: DomainErrorCode,
    message: string,
    readonly details: Readonly<Record<string, unknown>> = {},
  ) {
    super(message);
  }
  get status(): number {
    return DOMAIN_ERROR_CODES[this.code];
  }
}

export const isDomainError = (e: unknown): e is DomainError => e instanceof DomainError;
