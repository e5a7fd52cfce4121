import type { Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { readSpawns, readViolations } from "../fakes/fake-gpu.mjs";
import { aliveDoubles, startStack, type ServedStack } from "../helpers/stack.js";
import { until } from "../helpers/until.js";
import { launchBrowser, recorded, recorderScript, type TestBrowser } from "./browser.js";

/**
 * The operator page in a real headless Chromium, against the whole stack with the doubles
 * (fake Ollama, sd-cli double, simulated GPU). The sd-cli double's FAKE_SD_STEP_MS slows
 * sampling down so that the page's progress can be watched step by step. A screenshot of
 * each test's end goes to the browser's temp folder (printed once at the end).
 */

const KEY = "operator-key";
let browser: TestBrowser;
let stack: ServedStack | undefined;
let page: (Page & { errors: string[] }) | undefined;
let shot = "";

beforeAll(async () => {
  browser = await launchBrowser("diffugen-ui-");
});
afterAll(async () => {
  await browser?.close();
  if (browser) process.stdout.write(`operator page screenshots: ${browser.shotsDir}\n`);
});
afterEach(async () => {
  if (page) {
    await browser.screenshot(page, shot).catch(() => undefined);
    expect(page.errors).toEqual([]);
    await page.context().close();
  }
  page = undefined;
  await stack?.close();
  stack = undefined;
});

async function openPage(options: { width?: number; key?: string } = {}) {
  page = await browser.newPage(options.width);
  await page.addInitScript(recorderScript);
  await page.goto(`${stack!.url}/`);
  if (options.key !== undefined) {
    await page.locator("#login-key").fill(options.key);
    await page.locator("#login-form button[type=submit]").click();
  }
  return page;
}

/** Draws from the prompt box: a tiny image, `steps` steps. */
async function draw(page: Page, prompt: string, steps: number, refine = true) {
  await page.locator("#draw-prompt").fill(prompt);
  await page.locator("#draw-size").selectOption("64x64");
  await page.locator("#draw-steps").fill(String(steps));
  await page.locator("#draw-seed").fill("42");
  await page.locator("#draw-refine").setChecked(refine);
  await page.locator("#draw-submit").click();
  const row = page.locator("li.job").first();
  await row.locator(".prompt", { hasText: prompt }).waitFor();
  return row;
}

describe("the operator page", () => {
  it("opens with the API key, and shows only the login form without it (the API answers 401)", async () => {
    shot = "login";
    stack = await startStack({ server: { apiKey: KEY } });
    const p = await openPage();
    // The shell is open; the data is not.
    await p.locator("#login").waitFor({ state: "visible" });
    expect(await p.locator("#app").isHidden()).toBe(true);
    expect((await fetch(`${stack.url}/v1/jobs`)).status).toBe(401);
    expect((await fetch(`${stack.url}/v1/events`)).status).toBe(401);
    await browser.screenshot(p, "login-form");

    // A wrong key is refused with the API's own words.
    await p.locator("#login-key").fill("not-the-key");
    await p.locator("#login-form button[type=submit]").click();
    await expect.poll(() => p.locator("#login-error").textContent()).toMatch(/Incorrect API key/);
    expect(await p.locator("#app").isHidden()).toBe(true);

    await p.locator("#login-key").fill(KEY);
    await p.locator("#login-form button[type=submit]").click();
    await p.locator("#app").waitFor({ state: "visible" });
    await expect.poll(() => p.locator("#conn").getAttribute("data-state")).toBe("live");
    // The key stays in the tab's session storage, and a reload needs no login.
    expect(await p.evaluate(() => (globalThis as unknown as { sessionStorage: { getItem(k: string): string | null } }).sessionStorage.getItem("diffugen.apiKey"))).toBe(KEY);
    await p.reload();
    await p.locator("#app").waitFor({ state: "visible" });
    expect(await p.locator("#login").isHidden()).toBe(true);
    // The models of the form come from /health, read with the key.
    await expect.poll(() => p.locator("#draw-model option").allTextContents()).toContain("sd15");
    expect(await p.locator("#vram").isHidden()).toBe(true);

    // With a VRAM ledger in /health (VRAM_POLICY=fit, where nvidia-smi answers), a bar shows it:
    // /health's own shape (src/server/routes/health.ts), an 8 GB card as the ledger read it.
    await p.route("**/health", async (route) => {
      const health = await (await route.fetch()).json();
      const card = { tool: "nvidia-smi", totalMiB: 8192, usedMiB: 5120, freeMiB: 3072, llmMiB: 2560, llms: [], otherMiB: 2560, marginMiB: 768, at: Date.now() };
      await route.fulfill({ json: { ...health, vram: { policy: "fit", marginMiB: 768, card } } });
    });
    await p.reload();
    await p.locator("#vram").waitFor({ state: "visible" });
    expect(await p.locator("#vram-text").textContent()).toBe("5.0 GB used, 3.0 GB free of 8.0 GB");
    expect(await p.locator("#vram-bar .seg").count()).toBe(2);
  });

  it("a job from the prompt box: a progress bar through its real steps, then its image; the GPU goes LLM → diffusion → back", async () => {
    shot = "job-phone-390";
    stack = await startStack({ server: { apiKey: KEY }, sdEnv: { FAKE_SD_STEP_MS: "150" } });
    const p = await openPage({ width: 390, key: KEY });
    await p.locator("#app").waitFor({ state: "visible" });
    await expect.poll(() => p.locator("#conn").getAttribute("data-state")).toBe("live");

    const row = await draw(p, "a lighthouse in a storm", 8);
    const thumb = row.locator(".thumb img");
    await until("the image in the job's row", async () => ((await thumb.getAttribute("src")) ?? "").includes("/images/"), 20_000);
    await row.locator(".progress").waitFor({ state: "hidden" });

    const seen = await recorded(p);
    // The bar moved through the sampling steps sd-cli printed, each one shown.
    const steps = seen.status.map((line) => /^Step (\d+)\/8/.exec(line)?.[1]).filter((n): n is string => n !== undefined).map(Number);
    expect([...new Set(steps)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(seen.status.some((line) => /ETA [\d.]+ s · sd-cli/.test(line))).toBe(true);
    const bar = seen.progress.filter((n) => n > 0);
    expect(bar.length).toBeGreaterThanOrEqual(6);
    expect(bar).toEqual([...bar].sort((a, b) => a - b));
    expect(bar.at(-1)).toBeGreaterThan(80);

    // The image is the signed link the API gives (the browser cannot send the key), and it loads.
    const src = (await thumb.getAttribute("src"))!;
    expect(src).toMatch(/\/images\/[^?]+\.png\?exp=\d+&sig=/);
    expect(await thumb.evaluate((img) => (img as unknown as { naturalWidth: number }).naturalWidth)).toBe(64);
    expect(await row.locator(".meta").textContent()).toMatch(/sd15 · 64×64 · 8 steps · seed 42 · .* · succeeded/);

    // The GPU panel: the LLM (refining the prompt), then diffusion, then the LLM back in VRAM.
    await expect.poll(async () => (await recorded(p)).llm.at(-1)).toBe("resident");
    const gpu = await recorded(p);
    expect(gpu.holder.indexOf("llm")).toBeGreaterThanOrEqual(0);
    expect(gpu.holder.indexOf("diffusion")).toBeGreaterThan(gpu.holder.indexOf("llm"));
    expect(gpu.holder.at(-1)).toBe("idle");
    expect(gpu.llm).toEqual(expect.arrayContaining(["unloading", "unloaded", "loading", "resident"]));
    expect(gpu.llm.indexOf("resident")).toBeGreaterThan(gpu.llm.indexOf("unloaded"));
    await expect.poll(() => p.locator("#holder").textContent()).toMatch(/In VRAM: qwen2\.5:3b/);
    // The timeline drew the swap: an unload, the image job, a load.
    const spans = await p.locator("#timeline rect.span").evaluateAll((rects) => rects.map((r) => r.getAttribute("class")));
    expect(spans).toEqual(expect.arrayContaining(["span unload", "span image_job", "span load", "span llm_call"]));

    // At a phone's width nothing runs off the side.
    expect(await p.locator("html").evaluate((html) => (html as unknown as { scrollWidth: number }).scrollWidth)).toBeLessThanOrEqual(390);

    // Opening the job: its image full size, and its events.
    await row.locator(".thumb").click();
    const dialog = p.locator("#job-dialog");
    await dialog.waitFor({ state: "visible" });
    await expect.poll(async () => (await dialog.locator("#dialog-events li").allTextContents()).at(-1)).toMatch(/ end: succeeded$/);
    expect(await dialog.locator("#dialog-images img").evaluate((img) => (img as unknown as { naturalWidth: number }).naturalWidth)).toBe(64);
    expect(await dialog.locator("#dialog-facts").textContent()).toContain("a lighthouse in a storm");
    await browser.screenshot(p, "job-opened");
    await dialog.locator(".dialog-close button").click();

    // Its settings copied into a new request.
    await p.locator("#draw-prompt").fill("");
    await row.locator("button.reuse").click();
    expect(await p.locator("#draw-prompt").inputValue()).toBe("a lighthouse in a storm");
    expect(await p.locator("#draw-size").inputValue()).toBe("64x64");
    expect(await p.locator("#draw-steps").inputValue()).toBe("8");
    expect(await p.locator("#draw-seed").inputValue()).toBe("42");
    expect(readViolations(stack.gpuDir)).toEqual([]);
  });

  it("a cancel from the page stops the job and leaves no sd process", async () => {
    shot = "cancelled";
    stack = await startStack({ server: { apiKey: KEY }, sdEnv: { FAKE_SD_STEP_MS: "250" } });
    const p = await openPage({ key: KEY });
    await p.locator("#app").waitFor({ state: "visible" });

    const row = await draw(p, "a very slow cathedral", 40, false);
    await row.locator(".status", { hasText: /^Step 2\/40/ }).waitFor({ timeout: 15_000 });
    expect(aliveDoubles(stack.gpuDir).length).toBe(1);
    await row.locator("button.cancel").click();

    await expect.poll(() => row.getAttribute("data-status"), { timeout: 10_000 }).toBe("cancelled");
    expect(await row.locator(".status").textContent()).toMatch(/Cancelled/);
    expect(await row.locator("button.cancel").isHidden()).toBe(true);
    // sd-cli was spawned for it, and none is left running.
    expect(readSpawns(stack.gpuDir).length).toBe(1);
    await until("no sd process alive", () => aliveDoubles(stack!.gpuDir).length === 0, 5_000);
    // The GPU went back to the LLM.
    await expect.poll(async () => (await recorded(p)).llm.at(-1), { timeout: 10_000 }).toBe("resident");
    expect(readViolations(stack.gpuDir)).toEqual([]);
  });
});
