import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium, type Browser, type BrowserServer, type Page } from "playwright-core";
import { sleep } from "../helpers/timing.js";

/**
 * A real headless Chromium for the page's tests: Debian's `chromium` (`.ci/run` installs it
 * with apt when it is missing), driven by playwright-core, which downloads no browser of
 * its own. CHROMIUM_PATH names another build. One browser per test file; `close()` ends it,
 * and its process is then killed by pid if it is somehow still there.
 */
export function chromiumPath(): string {
  const named = process.env.CHROMIUM_PATH;
  if (named) return named;
  for (const name of ["chromium", "chromium-browser", "google-chrome"]) {
    try {
      const found = execFileSync("which", [name], { encoding: "utf8" }).trim();
      if (found) return found;
    } catch {
      // not this one
    }
  }
  throw new Error("Chromium not found: install it (apt-get install -y chromium) or set CHROMIUM_PATH");
}

export interface TestBrowser {
  browser: Browser;
  /** Where this file's screenshots go (kept after the run, to be looked at). */
  shotsDir: string;
  /** A page at this width (390: a phone), failing the test on any script error in it. */
  newPage(width?: number, height?: number): Promise<Page & { errors: string[] }>;
  /** Saves a full-page screenshot as `<shotsDir>/<name>.png`; returns its path. */
  screenshot(page: Page, name: string): Promise<string>;
  close(): Promise<void>;
}

export async function launchBrowser(prefix: string): Promise<TestBrowser> {
  const server: BrowserServer = await chromium.launchServer({
    executablePath: chromiumPath(),
    headless: true,
    // Root (CI, containers) cannot use Chromium's sandbox.
    args: process.getuid?.() === 0 ? ["--no-sandbox"] : [],
  });
  const pid = server.process().pid;
  const browser = await chromium.connect(server.wsEndpoint());
  const shotsDir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return {
    browser,
    shotsDir,
    async newPage(width = 1280, height = 900) {
      const context = await browser.newContext({ viewport: { width, height } });
      const page = Object.assign(await context.newPage(), { errors: [] as string[] });
      page.on("pageerror", (err) => page.errors.push(err.message));
      return page;
    },
    async screenshot(page, name) {
      const file = path.join(shotsDir, `${name}.png`);
      // From the top: the sticky header stays where a person sees it.
      await page.evaluate(() => (globalThis as unknown as { scrollTo(x: number, y: number): void }).scrollTo(0, 0));
      await page.screenshot({ path: file, fullPage: true });
      return file;
    },
    async close() {
      await browser.close().catch(() => undefined);
      await server.close().catch(() => undefined);
      if (pid !== undefined) await killByPid(pid);
    },
  };
}

async function killByPid(pid: number): Promise<void> {
  const alive = () => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  if (!alive()) return;
  process.kill(pid, "SIGKILL");
  for (let i = 0; i < 100 && alive(); i++) await sleep(20);
}

/**
 * Records, inside the page, every value the page's live parts take (from before its script
 * runs): the GPU holder's kind, the LLM's state, each job row's progress and status line.
 * A test reads them with `recorded(page)`, so that a state shown for a few milliseconds is
 * not missed between two looks.
 */
export const recorderScript = `
  window.__seen = { holder: [], llm: [], progress: [], status: [] };
  new MutationObserver((mutations) => {
    for (const m of mutations) {
      const el = m.type === "characterData" ? m.target.parentElement : m.target;
      if (!(el instanceof Element)) continue;
      const push = (list, value) => { if (list.at(-1) !== value) list.push(value); };
      if (el.id === "holder" && m.attributeName === "data-kind") push(window.__seen.holder, el.getAttribute("data-kind"));
      if (el.id === "llm" && m.attributeName === "data-state") push(window.__seen.llm, el.getAttribute("data-state"));
      if (el.classList.contains("progress") && m.attributeName === "aria-valuenow") push(window.__seen.progress, Number(el.getAttribute("aria-valuenow")));
      const status = el.closest(".status");
      if (status) push(window.__seen.status, status.textContent);
    }
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-kind", "data-state", "aria-valuenow"], childList: true, characterData: true });
`;

export interface Recorded {
  holder: string[];
  llm: string[];
  progress: number[];
  status: string[];
}

export function recorded(page: Page): Promise<Recorded> {
  return page.evaluate(() => (globalThis as unknown as { __seen: Recorded }).__seen);
}
