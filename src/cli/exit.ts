import { Lp2pError } from '../errors'

/** Exit statuses by error code: scripts can tell "not found" from "network down". */
export const EXIT: Record<string, number> = {
  ERR_USAGE: 2,
  ERR_NOT_FOUND: 3,
  ERR_AMBIGUOUS: 4,
  ERR_TRACKER_UNREACHABLE: 5,
  ERR_NO_SOURCES: 6,
  ERR_HASH_MISMATCH: 7,
  ERR_STORAGE: 8,
  ERR_BAD_NAME: 9,
  ERR_REMOTE: 10,
}

export function exitCode (err: unknown): number {
  return err instanceof Lp2pError ? EXIT[err.code] ?? 1 : 1
}

export function errorCode (err: unknown): string {
  return err instanceof Lp2pError ? err.code : (err as { code?: string }).code ?? 'ERR_INTERNAL'
}
