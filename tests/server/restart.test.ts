import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { isAlive, readSpawns } from "../fakes/fake-gpu.mjs";
import { startFakeBox, type FakeBox } from "../cli/helpers/fake-box.js";
import { startServe, type ServeProcess } from "../cli/helpers/serve-process.js";
import { until } from "../helpers/until.js";
import { parseSse, postJson } from "./harness.js";

/**
 * The process dies mid-job (a power cut, an OOM kill, `kill -9`): at the next start the
 * job is reported failed (interrupted), its stream ends, and what it left on disk is
 * neither served nor kept.
 */

let box: FakeBox;
const servers: ServeProcess[] = [];

beforeEach(async () => {
  box = await startFakeBox("restart");
});

afterEach(async () => {
  for (const server of servers.splice(0)) await server.kill();
  await box.close();
});

async function serve(): Promise<ServeProcess> {
  const env = box.env({ PORT: "0", HOST: "127.0.0.1", API_KEY: "", FAKE_SD_STEP_MS: "300", LOG_LEVEL: "silent" });
  const server = await startServe(env, box.dir);
  servers.push(server);
  return server;
}


it("a job killed with its server is reported interrupted after the restart, and its files are not served", async () => {
  const first = await serve();
  const res = await postJson(`${first.url}/v1/jobs`, { prompt: "a lighthouse at dusk", size: "64x64", steps: 20, refine: false });
  expect(res.status).toBe(202);
  const { id } = (await res.json()) as { id: string };
  // Mid-sampling, with a preview on disk.
  const outputs = box.outputDir;
  const preview = await until(
    "a preview file",
    () => (fs.existsSync(outputs) ? fs.readdirSync(outputs).find((f) => f.endsWith(".preview.png")) : undefined),
    15_000,
  );
  // And a sampling step journaled (the preview can be written before the first step's event is stored).
  await until(
    "a sampling step in the job's record",
    async () => /Sampling step \d+\/20/.test(((await (await fetch(`${first.url}/v1/jobs/${id}`)).json()) as { message?: string }).message ?? ""),
    15_000,
  );

  // The box goes down hard: server and sd-cli both.
  first.signal("SIGKILL");
  await first.exited;
  for (const spawn of readSpawns(box.gpuDir)) if (isAlive(spawn.pid)) process.kill(spawn.pid, "SIGKILL");
  // What sd-cli may have left besides: the first image of a batch it never finished.
  const partial = preview.replace(".preview.png", "_0.png");
  fs.copyFileSync(path.join(outputs, preview), path.join(outputs, partial));

  const second = await serve();
  const job = (await (await fetch(`${second.url}/v1/jobs/${id}`)).json()) as Record<string, any>;
  expect(job).toMatchObject({ id, status: "failed", error: { code: "interrupted" }, result: null });
  expect(job.finished_at).toEqual(expect.any(Number));
  // Its stream is over: a client following it hears the end, not silence.
  const events = parseSse(await (await fetch(`${second.url}/v1/jobs/${id}/events`)).text()).messages;
  expect(events.at(-1)).toMatchObject({ event: "end" });
  expect(JSON.parse(events.at(-1)!.data)).toMatchObject({ status: "failed", error: { code: "interrupted" } });
  expect(events.some((m) => m.event === "status" && JSON.parse(m.data).step)).toBe(true);

  expect((await fetch(`${second.url}/images/${partial}`)).status).toBe(404);
  expect(fs.readdirSync(outputs)).toEqual([]);

  // The restarted server draws as usual.
  const next = await postJson(`${second.url}/v1/images/generations`, { prompt: "a boat", size: "64x64", steps: 1, refine: false, response_format: "url" });
  expect(next.status).toBe(200);
  const url = ((await next.json()) as { data: { url: string }[] }).data[0]!.url;
  expect((await fetch(url)).status).toBe(200);
});
