import type { Browser } from 'playwright-core'
import { Registry } from '../../../src/tracker/registry'
import { DashboardHttp } from '../../../src/tracker/http'
import { TrackerMetrics } from '../../../src/tracker/metrics'
import { itWithChromium, launchChromium } from '../../helpers/browser'

const HOSTILE = '<img src=x onerror="document.title=\'pwned\'">'

/** The page itself, in a real headless Chromium, fed by an in-process registry. */
describe('dashboard page', () => {
  const it = itWithChromium()
  let browser: Browser | undefined
  let dash: DashboardHttp | undefined
  let reg: Registry

  beforeAll(async () => {
    reg = new Registry(undefined, 60_000)
    const now = Date.now()
    reg.publish({ nodeId: 'a'.repeat(32), host: '127.0.0.1', port: 7001 }, { name: HOSTILE, hash: 'a'.repeat(64), size: 3_000_000 }, now)
    reg.publish({ nodeId: 'b'.repeat(32), host: '127.0.0.1', port: 7002 }, { name: 'plain.bin', hash: 'b'.repeat(64), size: 1_000_000 }, now)
    dash = new DashboardHttp({ registry: reg, metrics: new TrackerMetrics(reg), probe: false, tickMs: 200 })
    await dash.start()
  })
  afterAll(async () => {
    await browser?.close()
    await dash?.close()
  })

  it('shows a file name that is HTML as text: no element is made of it, no script runs', async () => {
    browser = await launchChromium()
    const page = await browser.newPage()
    const dialogs: string[] = []
    const errors: string[] = []
    page.on('dialog', (d) => { dialogs.push(d.message()); void d.dismiss() })
    page.on('pageerror', (e) => errors.push(e.message))
    const addr = dash?.address()
    await page.goto(`http://127.0.0.1:${addr?.port ?? 0}/`)
    const row = page.locator(`#files tr[data-file-id="${'a'.repeat(64)}"] td.name`)
    await row.waitFor({ timeout: 10_000 })
    expect(await row.textContent()).toBe(HOSTILE)
    expect(await page.locator('#files tbody tr').count()).toBe(2)
    // the name also shows in the cluster list, as text there too
    expect(await page.locator('#clusters .title').first().textContent()).toContain(HOSTILE)
    expect(await page.locator('img').count()).toBe(0)
    expect(await page.title()).toBe('lp2p tracker')
    expect(await page.locator('#status').getAttribute('data-state')).toBe('live')
    expect(dialogs).toEqual([])
    expect(errors).toEqual([])
  })
})
