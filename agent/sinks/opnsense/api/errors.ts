/** What went wrong talking to one OPNsense firewall, classified so callers can tell the firewall's problems from one alias's. */
export type OpnsenseErrorKind =
  | 'auth'
  | 'forbidden'
  | 'bad_request'
  | 'not_found'
  | 'server'
  | 'failed'
  | 'not_an_address'
  | 'nonexistent_alias'
  | 'unreachable'
  /** An answer that is not what this endpoint gives (not JSON, missing fields). */
  | 'bad_response';

export interface OpnsenseErrorDetails {
  kind: OpnsenseErrorKind;
  /** Base URL of the firewall (never with credentials). */
  firewall: string;
  alias?: string;
  httpStatus?: number;
  /** API path that was called, e.g. /api/firewall/alias_util/add/bans. */
  endpoint: string;
}

export class OpnsenseError extends Error implements OpnsenseErrorDetails {
  readonly kind: OpnsenseErrorKind;
  readonly firewall: string;
  readonly alias?: string;
  readonly httpStatus?: number;
  readonly endpoint: string;

  constructor(message: string, details: OpnsenseErrorDetails, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'OpnsenseError';
    this.kind = details.kind;
    this.firewall = details.firewall;
    if (details.alias !== undefined) this.alias = details.alias;
    if (details.httpStatus !== undefined) this.httpStatus = details.httpStatus;
    this.endpoint = details.endpoint;
  }
}
