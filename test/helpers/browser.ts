import fs from 'node:fs'
import { chromium, type Browser } from 'playwright-core'

/** Debian's Chromium (make browser installs it); playwright-core drives it, nothing is downloaded. */
export const CHROMIUM = process.env.LP2P_CHROMIUM ?? '/usr/bin/chromium'
export const haveChromium = fs.existsSync(CHROMIUM)

/** `it`, or `it.skip` with the reason on the console when there is no Chromium to drive. */
export function itWithChromium (): jest.It {
  if (haveChromium) return it
  // eslint-disable-next-line no-console
  console.warn(`${CHROMIUM} is missing: browser specs skipped (run \`make browser\` as root to install Debian's chromium)`)
  return it.skip
}

export function launchChromium (): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
}
