/**
 * Writes docs/operator-page.png, the picture of the operator page in README: the page in
 * headless Chromium against the stack with the doubles, caught while a burst of image jobs
 * runs (one swap for three images), an LLM call through the gateway waits for the GPU, and
 * the last job shows its live progress and preview.
 *
 *   npx tsx tests/ui/operator-page-screenshot.ts [out.png]
 */
import path from "node:path";
import { postJson } from "../server/harness.js";
import { LLM_MODEL, repoRoot, startStack } from "../helpers/stack.js";
import { sleep } from "../helpers/timing.js";
import { until } from "../helpers/until.js";
import { launchBrowser } from "./browser.js";

const out = path.resolve(process.argv[2] ?? path.join(repoRoot, "docs/operator-page.png"));
const stack = await startStack({ server: { apiKey: undefined }, sdEnv: { FAKE_SD_STEP_MS: "180" } });
const browser = await launchBrowser("diffugen-docs-shot-");
try {
  const page = await browser.newPage(1280, 900);
  await page.goto(`${stack.url}/`);
  await page.locator("#app").waitFor({ state: "visible" });
  const chat = (content: string) => postJson(`${stack.url}/ollama/api/chat`, { model: LLM_MODEL, stream: false, messages: [{ role: "user", content }] });

  // An LLM call on its own, then a first image (the prompt refined, one swap).
  await chat("Name three colours of a sunset.");
  await page.locator("#draw-prompt").fill("a lighthouse in a storm at dusk");
  await page.locator("#draw-size").selectOption("256x256");
  await page.locator("#draw-steps").fill("8");
  await page.locator("#draw-submit").click();
  await until("the first image", async () => (await page.locator("li.job .thumb img[src*='/images/']").count()) === 1, 30_000);
  await until("the LLM back", async () => stack.deps.scheduler.state().llm === "resident", 30_000);
  await sleep(800);

  // A burst: three jobs back to back share one unload and one reload; a chat waits meanwhile.
  const burst = ["koi in a moonlit pond, ink wash", "a red fox in fresh snow", "an old tram in Lisbon, morning light"];
  for (const prompt of burst) await postJson(`${stack.url}/v1/jobs`, { prompt, size: "256x256", steps: 10, refine: false });
  await until("the burst's last job drawing", () => stack.deps.scheduler.state().gpu.kind === "diffusion", 30_000);
  await sleep(1500);
  const waiting = chat("Write a haiku about waiting.");
  await until("the last job half way", async () => /Step [4-9]\/10/.test((await page.locator("li.job").first().locator(".status").textContent()) ?? ""), 30_000);
  await page.evaluate(() => (globalThis as unknown as { scrollTo(x: number, y: number): void }).scrollTo(0, 0));
  await page.screenshot({ path: out, fullPage: true });
  process.stdout.write(`wrote ${out}\n`);
  await waiting;
} finally {
  await browser.close();
  await stack.close();
}
