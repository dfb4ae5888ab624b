import { DOMAIN_ERROR_CODES, type DomainError } from '../domain/shared/errors';

/** A JSON error with a stable `code`: what happened, and enough detail to act on it. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

export const notFound = (what: string) => new ApiError(404, 'not_found', `${what} not found`);

export function fromDomain(err: DomainError): ApiError {
  return new ApiError(DOMAIN_ERROR_CODES[err.code], err.code, err.message, { ...err.details });
}

export type ErrorBody = { code: string; message: string; details?: Record<string, unknown> };
