import { createHmac, timingSafeEqual } from 'node:crypto'
import { TOKEN_BYTES } from '../protocol/messages'
import type { Endpoint } from './flow'

/** A token is good for the period it was made in and the next one. */
export const TOKEN_PERIOD_MS = 120_000

/** HMAC of the source address and the time period, so only who can receive at an address can use its token. */
export function makeToken (secret: Buffer, from: Endpoint, now: number, periodMs = TOKEN_PERIOD_MS): Uint8Array {
  return tokenFor(secret, from, Math.floor(now / periodMs))
}

function tokenFor (secret: Buffer, from: Endpoint, period: number): Uint8Array {
  return new Uint8Array(createHmac('sha256', secret).update(`${from.address}|${from.port}|${period}`).digest().subarray(0, TOKEN_BYTES))
}

export function tokenValid (secret: Buffer, from: Endpoint, token: Uint8Array | undefined, now: number, periodMs = TOKEN_PERIOD_MS): boolean {
  if (token === undefined || token.length !== TOKEN_BYTES) return false
  const p = Math.floor(now / periodMs)
  return [p, p - 1].some((q) => timingSafeEqual(tokenFor(secret, from, q), token))
}
