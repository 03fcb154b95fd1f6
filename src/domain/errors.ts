/** One error class per kind; `cause` is kept so the root failure is never hidden. */
export class DetektrError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Bad user input: flags, config keys, ids. The CLI exits 2 on these. */
export class InvalidInputError extends DetektrError {}

/** A stream entry that does not decode into a valid message. */
export class MalformedMessageError extends DetektrError {
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

/** A lifecycle transition the state machine does not allow. */
export class InvalidTransitionError extends DetektrError {}

/** A dependency (Redis, PostgreSQL, a camera) could not be reached or answered badly. */
export class ConnectionError extends DetektrError {}

/** An operation that did not finish within its time limit. */
export class TimeoutError extends DetektrError {}

/** Something asked for does not exist (an unknown frame id, say). The CLI exits 1. */
export class NotFoundError extends DetektrError {}

/**
 * A frame's image left Redis (payload TTL) before a processor got to it: not the
 * processor's fault, so the frame's stage ends dropped with this reason rather than failed
 * (which would count against the processor's circuit breaker).
 */
export class PayloadExpiredError extends DetektrError {}

/** "Name: message" of anything thrown, for a reason or an error field. */
export function describeError(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : `Error: ${String(err)}`;
}
