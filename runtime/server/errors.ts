/**
 * API errors answered as OpenAI answers them:
 * `{ "error": { "message", "type", "param", "code" } }`.
 *
 * @module
 */

/** The JSON body of every 4xx/5xx answer. */
export interface ErrorBody {
  /** The error. */
  error: {
    /** What went wrong, in a sentence (never a stack trace). */
    message: string;
    /** OpenAI's error type, e.g. "invalid_request_error". */
    type: string;
    /** The request field at fault, or null. */
    param: string | null;
    /** A machine-readable code, or null. */
    code: string | null;
  };
}

/** Options of {@linkcode ApiError}. */
export interface ApiErrorOptions {
  /** OpenAI's error type; default from the status. */
  type?: string;
  /** The request field at fault. */
  param?: string | null;
  /** A machine-readable code. */
  code?: string | null;
  /** Extra response headers (Retry-After, Allow…). */
  headers?: Record<string, string>;
}

/** The default OpenAI error type of a status. */
export function errorType(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 403) return "permission_error";
  if (status === 429) return "rate_limit_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

/** An error answered to the client with `status` and an OpenAI-style body. */
export class ApiError extends Error {
  /** HTTP status. */
  readonly status: number;
  /** OpenAI's error type. */
  readonly type: string;
  /** The field at fault. */
  readonly param: string | null;
  /** A machine-readable code. */
  readonly code: string | null;
  /** Extra response headers. */
  readonly headers: Record<string, string>;

  /** Creates the error. */
  constructor(status: number, message: string, o: ApiErrorOptions = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.type = o.type ?? errorType(status);
    this.param = o.param ?? null;
    this.code = o.code ?? null;
    this.headers = o.headers ?? {};
  }

  /** The JSON body. */
  body(): ErrorBody {
    return {
      error: { message: this.message, type: this.type, param: this.param, code: this.code },
    };
  }
}

/** A 400 naming the field and the rule it broke. */
export function badRequest(
  message: string,
  param: string | null,
  code = "invalid_value",
): ApiError {
  return new ApiError(400, message, { param, code });
}
