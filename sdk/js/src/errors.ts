/**
 * The errors of the SDK: one class per stable `code`, the same codes as the
 * WIT error cases of `airssys:wasm` (`invalid-key`, `precondition-failed` …)
 * and as the Python SDK (`airssys_storage_sdk.errors`), plus
 * `value-decode-error` and `prefix-conflict`.
 *
 * Every error the SDK throws is a {@link StorageError}; a storage call the
 * host refuses arrives as the class of its WIT case, carrying the host's
 * message (see `guest.ts`).
 */

/** Base class of every storage error; `code` is stable (the WIT error case). */
export class StorageError extends Error {
  /** The stable error code, e.g. `"invalid-key"`. */
  readonly code: string = "internal-error";

  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The component's manifest does not allow the operation. */
export class PermissionDenied extends StorageError {
  override readonly code: string = "permission-denied";
}

/** The write would take the component past its byte quota; nothing was written. */
export class QuotaExceeded extends StorageError {
  override readonly code: string = "quota-exceeded";
}

/** The key does not exist (where the operation needs it). */
export class KeyNotFound extends StorageError {
  override readonly code: string = "key-not-found";
}

/** A key that cannot be stored: not encodable, empty, too long or with control characters. */
export class InvalidKey extends StorageError {
  override readonly code: string = "invalid-key";
}

/** A value longer than the host's maximum value size. */
export class ValueTooLarge extends StorageError {
  override readonly code: string = "value-too-large";
}

/** A failure of the host or its backend. */
export class InternalError extends StorageError {
  override readonly code: string = "internal-error";
}

/** More keys or operations than one query or batch may hold. */
export class TooManyKeys extends StorageError {
  override readonly code: string = "too-many-keys";
}

/** A malformed argument other than a key (a value JSON cannot hold, a page size, a cursor). */
export class InvalidArgument extends StorageError {
  override readonly code: string = "invalid-argument";
}

/** A compare-and-swap whose version no longer holds; nothing was written. */
export class PreconditionFailed extends StorageError {
  override readonly code: string = "precondition-failed";
}

/**
 * A stored value is not what the collection expects (not UTF-8 JSON, not a
 * decimal count, not a slot record); the message names the key. Nothing is changed.
 */
export class ValueDecodeError extends StorageError {
  override readonly code: string = "value-decode-error";
}

/**
 * A collection's prefix overlaps the prefix of another collection of the
 * component (or is registered as another kind). Thrown when the collection is
 * created, before anything is written: the registry of prefixes lives in the
 * component's own storage, so this holds across processes, hosts and guests
 * in every language.
 */
export class PrefixConflict extends StorageError {
  override readonly code: string = "prefix-conflict";
}

/** The class of each WIT error case (the `tag` of jco's variant), by code. */
export const ERRORS_BY_CODE: Readonly<Record<string, new (message: string) => StorageError>> = {
  "permission-denied": PermissionDenied,
  "quota-exceeded": QuotaExceeded,
  "key-not-found": KeyNotFound,
  "invalid-key": InvalidKey,
  "value-too-large": ValueTooLarge,
  "internal-error": InternalError,
  "too-many-keys": TooManyKeys,
  "invalid-argument": InvalidArgument,
  "precondition-failed": PreconditionFailed,
  "value-decode-error": ValueDecodeError,
  "prefix-conflict": PrefixConflict,
};
