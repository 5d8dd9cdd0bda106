import { printable, quoted } from './text'

/**
 * One class per failure, each with a stable `code`. Callers (and tests) branch on `code`, never
 * on message text; the CLI maps codes to exit statuses.
 */
export class Lp2pError extends Error {
  constructor (readonly code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
  }
}

/** A datagram or frame that does not decode into a valid message. */
export class ProtocolError extends Lp2pError {
  constructor (message: string) { super('ERR_PROTOCOL', message) }
}

/** The tracker did not answer after every retry. */
export class TrackerUnreachableError extends Lp2pError {
  constructor (readonly tracker: string, attempts: number) {
    super('ERR_TRACKER_UNREACHABLE', `tracker ${tracker} did not answer after ${attempts} attempts`)
  }
}

/** The tracker (or a peer) answered with an error message. */
export class RemoteError extends Lp2pError {
  /** @param retryMs what the peer asked (with BUSY): ask again no sooner than this */
  constructor (readonly remoteCode: string, message: string, readonly retryMs?: number) { super('ERR_REMOTE', `${remoteCode}: ${message}`) }
}

/** No file matches the name or id prefix asked for. */
export class NotFoundError extends Lp2pError {
  /** @param hint what the user may have meant (said in parentheses) */
  constructor (readonly query: string, hint?: string) {
    super('ERR_NOT_FOUND', `${query.endsWith('/') ? `no file in folder ${quoted(query)}` : `no file named or with id prefix ${quoted(query)}`}${hint === undefined ? '' : ` (${hint})`}`)
  }
}

/** More than one file matches. */
export class AmbiguousError extends Lp2pError {
  constructor (readonly query: string, readonly candidates: { name: string, fileId: string, holders?: number }[]) {
    super('ERR_AMBIGUOUS', `${quoted(query)} matches ${candidates.length} files: ` +
      candidates.slice(0, 10).map((c) => `${c.fileId.slice(0, 12)} ${quoted(c.name)}${c.holders === undefined ? '' : ` (held by ${c.holders})`}`).join(', ') +
      (candidates.length > 10 ? ', …' : '') + ' (use a longer id prefix)')
  }
}

/** Every source failed or none could be found before the file was complete. */
export class NoSourcesError extends Lp2pError {
  /** @param why what the sources did, when some were known (they declined everything for a while) */
  constructor (readonly fileId: string, readonly missingPieces: number, fileName?: string, why?: string) {
    super('ERR_NO_SOURCES', `no peer can supply the remaining ${missingPieces} piece(s) of ${fileName === undefined ? fileId.slice(0, 12) : `${printable(fileName)} (${fileId.slice(0, 12)})`}${why === undefined ? '' : `: ${why}`}`)
  }
}

/** A peer timed out. */
export class PeerTimeoutError extends Lp2pError {
  constructor (readonly peer: string, what: string) { super('ERR_PEER_TIMEOUT', `peer ${peer} did not answer ${what} in time`) }
}

/** The downloaded bytes do not hash to what was asked for. */
export class HashMismatchError extends Lp2pError {
  /**
   * @param badPieces pieces on disk found not to match their hashes (forgotten: the same get fetches them again)
   * @param onDisk what was downloaded hashed right, but the file on disk no longer holds it (something else wrote the .part meanwhile)
   */
  constructor (readonly expected: string, readonly actual: string, readonly badPieces = 0, onDisk = false) {
    super('ERR_HASH_MISMATCH', onDisk
      ? `the file on disk does not hold what was downloaded and verified (${expected.slice(0, 16)}…): ${badPieces} piece(s) of the .part changed during the download (another program wrote to it); nothing renamed, the same get fetches only those again`
      : `content hash ${actual.slice(0, 16)}… does not match ${expected.slice(0, 16)}…` +
        (badPieces > 0 ? `: ${badPieces} piece(s) stored by an earlier run no longer match their hashes; the same get fetches only those again` : ': the same get starts over'))
  }
}

/** A file name from the network that cannot be used safely. */
export class BadNameError extends Lp2pError {
  constructor (readonly fileName: string, readonly reason: string) { super('ERR_BAD_NAME', `unsafe file name ${quoted(fileName)}: ${reason}`) }
}

/** Writing the download failed (disk full, permissions, …). */
export class StorageError extends Lp2pError {
  constructor (message: string, cause?: unknown) { super('ERR_STORAGE', message, { cause }) }
}

/** A peer connection closed while requests were outstanding. */
export class ConnectionClosedError extends Lp2pError {
  constructor (readonly peer: string, why = 'connection closed') { super('ERR_CONNECTION_CLOSED', `${peer}: ${why}`) }
}

/** Bad command-line input. */
export class UsageError extends Lp2pError {
  constructor (message: string) { super('ERR_USAGE', message) }
}

/** A tracker request without a valid connection token for its source address. */
export class BadTokenError extends Lp2pError {
  constructor () { super('ERR_BAD_TOKEN', 'missing or stale connection token') }
}
