import fs from 'node:fs'
import path from 'node:path'
import type { Browser, Page } from 'playwright-core'
import { itWithChromium, launchChromium } from '../helpers/browser'
import { perTest, shareRandom, spawnLp2p, startPeer } from './helpers'

const ARTIFACTS = path.join(__dirname, '..', '..', 'test-artifacts')

/** Sum of the heatmap's per-cell counts for a file (cells are single pieces for small files). */
function heatSum (page: Page, fileId: string): Promise<number> {
  return page.$$eval(`#files .heatmap[data-file-id="${fileId}"] .cell`, (cells) => cells.reduce((s, c) => s + Number(c.getAttribute('data-count')), 0))
}

/** The dashboard of a real tracker, in a real headless Chromium, while real peers share and fetch. */
describe('dashboard (browser)', () => {
  const it = itWithChromium()
  const { procs, dir } = perTest('dashboard')
  let browser: Browser | undefined
  afterAll(async () => { await browser?.close() })

  it('shows a file a peer publishes, and its availability heatmap fills while a get downloads it', async () => {
    const F = 24 * 1024 * 1024
    const { share, sha } = shareRandom(dir(), 'share', 'dash-demo.bin', F)
    const tracker = spawnLp2p(['tracker', '--port', '0', '--memory', '--http', '127.0.0.1:0', '--json'])
    procs.push(tracker)
    const listening = await tracker.waitFor((e) => e.event === 'listening')
    const udp = listening.address as string
    const web = listening.http as string
    expect(web).toMatch(/^127\.0\.0\.1:\d+$/)
    await startPeer(procs, share, udp)

    browser = await launchChromium()
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } })
    const errors: string[] = []
    page.on('pageerror', (e) => errors.push(e.message))
    await page.goto(`http://${web}/`)
    const row = page.locator(`#files tr[data-file-id="${sha}"]`)
    await row.waitFor({ timeout: 20_000 })
    expect(await row.locator('td.name').textContent()).toBe('dash-demo.bin')
    const pieces = F / (256 * 1024)
    // the seeder alone: every piece held once, once its probe answered
    await page.waitForFunction(([id, n]) => {
      const cells = document.querySelectorAll(`#files .heatmap[data-file-id="${id}"] .cell`)
      return cells.length === n && [...cells].every((c) => c.getAttribute('data-count') === '1')
    }, [sha, pieces] as const, { timeout: 20_000 })

    // 24 MiB at 2 MB/s: about 12 s of download, a dozen dashboard ticks
    const get = spawnLp2p(['get', 'dash-demo.bin', '--out', path.join(dir(), 'out'), '--tracker', udp, '--download-limit', '2M', '--json'])
    procs.push(get)
    const seen = new Set<number>()
    let shot = false
    // both nodes show while the get runs, and the cluster lists them (once it is done, the get
    // leaves the tracker: the next tick shows the seeder alone)
    let both = false
    for (let i = 0; i < 200 && !get.events.some((e) => e.event === 'done'); i++) {
      const sum = await heatSum(page, sha)
      if (!both && await page.locator('#nodes tbody tr').count() === 2 && await page.locator(`#clusters .cluster[data-file-id="${sha}"] .chip`).count() === 2) both = true
      if (sum > pieces && sum < 2 * pieces) {
        seen.add(sum)
        if (!shot) {
          fs.mkdirSync(ARTIFACTS, { recursive: true })
          await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard.png'), fullPage: true })
          shot = true
        }
      }
      await page.waitForTimeout(250)
    }
    await get.waitFor((e) => e.event === 'done', 60_000)
    // the counts rose during the download, through more than one value: live updates, not one final state
    expect(seen.size).toBeGreaterThanOrEqual(2)
    expect(fs.existsSync(path.join(ARTIFACTS, 'dashboard.png'))).toBe(true)
    expect(both).toBe(true)
    expect(errors).toEqual([])
  }, 120_000)
})
