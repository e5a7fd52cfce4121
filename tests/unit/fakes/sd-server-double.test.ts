/**
 * The sd-server test double (tests/fakes/sd-server.mjs) against the captured runs of the real
 * program (shared/fixtures/sd-server): the same bytes on the same streams, the same HTTP answers
 * (status, content type, body, key order), the same lazy loading and one-at-a-time generation,
 * and its traps (exit 0 on a taken port, no cancel on disconnect, no SIGTERM handler).
 */
import { describe, it, expect, afterEach, afterAll } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { fileURLToPath } from "node:url";
import { PNG } from "pngjs";
import { readSpawns, readViolations, runningDiffusions, setResidentModels } from "../../fakes/fake-gpu.mjs";
import { startFakeOllama } from "../../fakes/ollama-server.js";
import { freePort } from "../../helpers/ports.js";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const SD = path.join(REPO, "tests/fakes/sd-server.mjs");
const FIXTURES = path.resolve(REPO, "../shared/fixtures/sd-server");
const haveFixtures = fs.existsSync(path.join(FIXTURES, "help.stdout"));
const FIXTURE_PORT = 18234;

/** Short phases so the whole file runs in seconds. */
const FAST = {
  FAKE_SD_LISTEN_MS: "5",
  FAKE_SD_STEP_MS: "5",
  FAKE_SD_LOAD_MS: "5",
  FAKE_SD_DECODE_MS: "5",
  FAKE_SD_COND_MS: "2",
};

interface RunResult {
  stdout: Buffer;
  stderr: Buffer;
  code: number | null;
  signal: NodeJS.Signals | null;
}

interface Running {
  child: ChildProcess;
  port: number;
  done: Promise<RunResult>;
  waitForStdout(text: string, timeoutMs?: number): Promise<void>;
  stdoutSoFar(): Buffer;
  stderrSoFar(): Buffer;
}

const started = new Set<ChildProcess>();

afterEach(async () => {
  const alive = [...started].filter((c) => c.exitCode === null && c.signalCode === null);
  for (const child of alive) {
    if (child.pid !== undefined) {
      try {
        process.kill(child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }
  await Promise.all(alive.map((c) => new Promise((resolve) => (c.exitCode !== null || c.signalCode !== null ? resolve(null) : c.once("close", resolve)))));
  started.clear();
});

const tempDirs: string[] = [];
afterAll(() => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sd-server-double-"));
  tempDirs.push(dir);
  return dir;
}

/** A temp cwd holding models/sd1-random.safetensors, like the fixture runs' cwd. */
function workDir(): string {
  const dir = tempDir();
  fs.mkdirSync(path.join(dir, "models"));
  fs.writeFileSync(path.join(dir, "models/sd1-random.safetensors"), "");
  return dir;
}

function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("FAKE_")) env[k] = v;
  return { ...env, ...FAST, ...extra };
}


function start(args: string[], opts: { cwd: string; port?: number; env?: Record<string, string> }): Running {
  const child = spawn(SD, args, { cwd: opts.cwd, env: childEnv(opts.env ?? {}), stdio: ["ignore", "pipe", "pipe"] });
  started.add(child);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const waiters: { text: string; resolve: () => void }[] = [];
  child.stdout?.on("data", (d: Buffer) => {
    out.push(d);
    const all = Buffer.concat(out).toString("latin1");
    for (const w of waiters.splice(0)) (all.includes(w.text) ? w.resolve() : waiters.push(w));
  });
  child.stderr?.on("data", (d: Buffer) => err.push(d));
  const done = new Promise<RunResult>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) => resolve({ stdout: Buffer.concat(out), stderr: Buffer.concat(err), code, signal }));
  });
  return {
    child,
    port: opts.port ?? 0,
    done,
    stdoutSoFar: () => Buffer.concat(out),
    stderrSoFar: () => Buffer.concat(err),
    waitForStdout(text, timeoutMs = 10_000) {
      if (Buffer.concat(out).toString("latin1").includes(text)) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${JSON.stringify(text)}`)), timeoutMs);
        waiters.push({ text, resolve: () => (clearTimeout(timer), resolve()) });
        void done.then(() => {
          clearTimeout(timer);
          reject(new Error(`exited before printing ${JSON.stringify(text)}`));
        });
      });
    },
  };
}

/** Start a server on a free port and wait until it accepts connections. */
async function serve(opts: { cwd?: string; extraArgs?: string[]; env?: Record<string, string> } = {}): Promise<Running> {
  const port = await freePort();
  const args = ["-m", "models/sd1-random.safetensors", "--listen-ip", "127.0.0.1", "--listen-port", String(port), ...(opts.extraArgs ?? [])];
  const p = start(args, { cwd: opts.cwd ?? workDir(), port, env: opts.env });
  await p.waitForStdout(`listening on: http://127.0.0.1:${port}\n`);
  // `listening on` is printed before the bind: retry a refused connect briefly, as a client must
  for (let i = 0; ; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => (s.end(), resolve(true)));
      s.once("error", () => resolve(false));
    });
    if (ok) return p;
    if (i > 100) throw new Error("the double never accepted a connection");
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface Reply {
  status: number;
  type: string | null;
  body: Buffer;
  headers: http.IncomingHttpHeaders;
}

/** One request on its own connection (as the capture client did). */
function request(port: number, method: string, urlPath: string, body?: string | Buffer, onRequest?: (req: http.ClientRequest) => void): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(body);
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        method,
        path: urlPath,
        agent: false,
        headers: payload === undefined ? {} : { "Content-Type": "application/json", "Content-Length": String(payload.length) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, type: res.headers["content-type"] ?? null, body: Buffer.concat(chunks), headers: res.headers }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    onRequest?.(req);
    req.end(payload);
  });
}

const post = (port: number, urlPath: string, body: unknown) => request(port, "POST", urlPath, JSON.stringify(body));
const fixture = (name: string) => fs.readFileSync(path.join(FIXTURES, name));
const fixtureArgs = (name: string, port: number): string[] =>
  (JSON.parse(fs.readFileSync(path.join(FIXTURES, `${name}.cmd`), "utf8")) as { argv: string[] }).argv
    .slice(1)
    .map((a) => (a === String(FIXTURE_PORT) ? String(port) : a));
const usageAsInvoked = () => Buffer.from(fixture("help.stdout").toString("utf8").replace("Usage: sd-server [options]", `Usage: ${SD} [options]`));

interface HttpRecord {
  n: number;
  method: string;
  path: string;
  requestBody: unknown;
  requestBodyRaw?: string;
  status: number | null;
  responseHeaders: { "content-type": string | null };
  responseBody: unknown;
  responseBytes: number;
}

function httpRecords(name: string): HttpRecord[] {
  return fixture(`${name}.timeline.jsonl`)
    .toString("utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as [number, string, unknown])
    .filter((r) => r[1] === "http")
    .map((r) => r[2] as HttpRecord);
}

/** The stdout of a fixture run with the port the double was given. */
const fixtureStdout = (name: string, port: number) => fixture(`${name}.stdout`).toString("utf8").replaceAll(`:${FIXTURE_PORT}\n`, `:${port}\n`);

/**
 * The stream as a parser sees it: split on \r and \n, `\x1b[K` dropped, durations and speeds
 * replaced, and a run of `#` loading bars reduced to its last one (how many redraws a load gets
 * depends on how long it takes, in the real program too).
 */
function normalise(stdout: Buffer | string): string[] {
  const lines: string[] = [];
  for (const raw of stdout.toString().split(/\r|\n/)) {
    if (raw === "") continue;
    const line = raw.replace(/\x1b\[K$/, "");
    const bar = /^ {2}\|([#=> ]{50})\| (\d+)\/(\d+) - [\d.]+(s\/it|it\/s|MB\/s|GB\/s)$/.exec(line);
    if (bar) {
      const cells = bar[1] ?? "";
      const kind = cells.includes("#") ? "#" : "=";
      if (kind === "#" && lines.at(-1)?.startsWith("#")) lines.pop();
      lines.push(`${kind}|${cells}| ${bar[2]}/${bar[3]}`);
    } else {
      lines.push(line.replace(/\d+\.\d\ds\b/g, "<t>"));
    }
  }
  return lines;
}

/** A response body with every base64 PNG replaced by "<png WxH>" (the fixtures replaced theirs too). */
function withPlaceholders(body: string): string {
  return body.replace(/"iVBORw0KGgo[A-Za-z0-9+/=]*"/g, (m) => {
    const png = Buffer.from(m.slice(1, -1), "base64");
    return `"<png ${png.readUInt32BE(16)}x${png.readUInt32BE(20)}>"`;
  });
}
/** The fixture's response as the server sent it (compact JSON, the server's key order), placeholders shortened. */
const fixtureBody = (r: HttpRecord) => JSON.stringify(r.responseBody).replace(/"<png (\d+x\d+) sha256:[0-9a-f]+>"/g, '"<png $1>"');

/** The tEXt chunks of a PNG, keyword → text. */
function pngText(png: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 8; i < png.length; ) {
    const len = png.readUInt32BE(i);
    const type = png.toString("latin1", i + 4, i + 8);
    if (type === "tEXt") {
      const data = png.subarray(i + 8, i + 8 + len);
      const nul = data.indexOf(0);
      out.set(data.toString("latin1", 0, nul), data.subarray(nul + 1).toString("utf8"));
    }
    expect(png.readUInt32BE(i + 8 + len)).toBe(zlib.crc32(png.subarray(i + 4, i + 8 + len)) >>> 0);
    i += 12 + len;
  }
  return out;
}

const imagesOf = (r: Reply) => (JSON.parse(r.body.toString()) as { images: string[] }).images.map((b) => Buffer.from(b, "base64"));
const pixels = (png: Buffer) => PNG.sync.read(png).data;
const FOX = { prompt: "a red fox", width: 64, height: 64, steps: 4, seed: 42, cfg_scale: 7, sampler_name: "euler_a" };
const gpuMarkers = (dir: string) => fs.readdirSync(dir).filter((f) => f.endsWith(".running"));

// ---------------------------------------------------------------------------------------------

describe.skipIf(!haveFixtures)("sd-server double: the command line, as captured", () => {
  it("--version prints the version line only", async () => {
    const r = await start(["--version"], { cwd: tempDir() }).done;
    expect(r.stdout.equals(fixture("version.stdout"))).toBe(true);
    expect(r.stderr.length).toBe(0);
    expect(r.code).toBe(0);
  });

  it("--help prints the usage (argv[0] as invoked) and exits 0", async () => {
    const r = await start(["--help"], { cwd: tempDir() }).done;
    expect(r.stdout.equals(usageAsInvoked())).toBe(true);
    expect(r.stderr.length).toBe(0);
    expect(r.code).toBe(0);
  });

  it("serve-preview: --preview is unknown to sd-server: the error on stderr, the usage on stdout, exit 1", async () => {
    const port = await freePort();
    const r = await start(fixtureArgs("serve-preview", port), { cwd: workDir() }).done;
    expect(r.stderr.toString()).toBe(fixture("serve-preview.stderr").toString());
    expect(r.stdout.equals(usageAsInvoked())).toBe(true);
    expect(r.code).toBe(1);
  });

  it("serve-missing-model: WARN on stdout, 3 ERRORs on stderr, exit 1 before listening", async () => {
    const port = await freePort();
    const r = await start(fixtureArgs("serve-missing-model", port), { cwd: workDir() }).done;
    expect(r.stdout.toString()).toBe(fixture("serve-missing-model.stdout").toString());
    expect(r.stderr.toString()).toBe(fixture("serve-missing-model.stderr").toString());
    expect(r.code).toBe(1);
    expect(r.stdout.toString()).not.toContain("listening on");
  });

  it("no model at all: the error, the usage, exit 1", async () => {
    const r = await start(["--listen-port", "1"], { cwd: tempDir() }).done;
    expect(r.stderr.toString()).toBe("[ERROR] common.cpp:742  - error: the following arguments are required: model_path/diffusion_model\n");
    expect(r.stdout.equals(usageAsInvoked())).toBe(true);
    expect(r.code).toBe(1);
  });
});

describe.skipIf(!haveFixtures)("sd-server double: start-up and generations, as captured", () => {
  it("prints the start-up lines of the capture, with its own port, then listens", async () => {
    const port = await freePort();
    const p = start(fixtureArgs("serve-txt2img-twice", port), { cwd: workDir(), port });
    const line = `listening on: http://127.0.0.1:${port}\n`;
    await p.waitForStdout(line);
    const expected = fixtureStdout("serve-txt2img-twice", port);
    expect(p.stdoutSoFar().toString()).toBe(expected.slice(0, expected.indexOf(line) + line.length));
    expect(p.stderrSoFar().length).toBe(0);
    p.child.kill("SIGTERM");
    const r = await p.done;
    expect(r.signal).toBe("SIGTERM");
    expect(r.stderr.length).toBe(0);
  });

  it("serve-txt2img-twice: request 1 loads the weights, request 2 does not; answers and stdout as captured", async () => {
    const p = await serve();
    const records = httpRecords("serve-txt2img-twice");
    const replies: Reply[] = [];
    for (const rec of records) replies.push(await request(p.port, rec.method, rec.path, JSON.stringify(rec.requestBody)));
    p.child.kill("SIGTERM");
    const r = await p.done;
    expect(r.signal).toBe("SIGTERM");
    expect(r.stderr.length).toBe(0);
    // the whole stdout, start-up and both requests, line for line
    expect(normalise(r.stdout)).toEqual(normalise(fixtureStdout("serve-txt2img-twice", p.port)));
    const text = r.stdout.toString();
    const second = text.indexOf("generate_image 64x64", text.indexOf("generate_image completed"));
    expect(text.slice(0, second)).toContain("| 686/686 - ");
    expect(text.slice(second)).not.toContain("#");

    records.forEach((rec, i) => {
      const reply = replies[i] as Reply;
      expect(reply.status).toBe(rec.status);
      expect(reply.type).toBe(rec.responseHeaders["content-type"]);
      // same keys in the same order, same info string, same echoed parameters
      expect(withPlaceholders(reply.body.toString())).toBe(fixtureBody(rec));
      const [png] = imagesOf(reply);
      const real = fixture(`serve-txt2img-twice.resp${rec.n}.png`);
      expect(pngText(png as Buffer)).toEqual(pngText(real));
      const decoded = PNG.sync.read(png as Buffer);
      expect([decoded.width, decoded.height]).toEqual([64, 64]);
      expect((png as Buffer)[25]).toBe(2); // RGB, like the real one
    });
  });

  it("serve-openai: GET /, GET /v1/models and /v1/images/generations with <sd_cpp_extra_args>", async () => {
    const p = await serve();
    const records = httpRecords("serve-openai");
    for (const rec of records) {
      const reply = await request(p.port, rec.method, rec.path, rec.requestBody === null ? undefined : JSON.stringify(rec.requestBody));
      expect(reply.status).toBe(rec.status);
      expect(reply.type).toBe(rec.responseHeaders["content-type"]);
      if (rec.path === "/v1/images/generations") {
        const body = JSON.parse(reply.body.toString()) as { created: number; data: { b64_json: string }[] };
        expect(Object.keys(body)).toEqual(["created", "data", "output_format"]);
        expect(Math.abs(body.created - Date.now() / 1000)).toBeLessThan(60);
        const expected = fixtureBody(rec).replace(/"created":\d+/, `"created":${body.created}`);
        expect(withPlaceholders(reply.body.toString())).toBe(expected);
        const png = Buffer.from((body.data[0] as { b64_json: string }).b64_json, "base64");
        expect(pngText(png)).toEqual(pngText(fixture("serve-openai.resp3.png")));
        expect(pngText(png).get("parameters")).toContain("Sampler: NONE,");
      } else {
        expect(reply.body.toString()).toBe(typeof rec.responseBody === "string" ? rec.responseBody : JSON.stringify(rec.responseBody));
        expect(reply.body.length).toBe(rec.responseBytes);
      }
    }
    p.child.kill("SIGTERM");
    const r = await p.done;
    expect(normalise(r.stdout)).toEqual(normalise(fixtureStdout("serve-openai", p.port)));
  });

  it("serve-batch2: two sampling runs, seeds 42 and 43, one answer with both images; the pixels of the single requests", async () => {
    const p = await serve();
    const [rec] = httpRecords("serve-batch2");
    const reply = await request(p.port, "POST", "/sdapi/v1/txt2img", JSON.stringify((rec as HttpRecord).requestBody));
    expect(withPlaceholders(reply.body.toString())).toBe(fixtureBody(rec as HttpRecord));
    const batch = imagesOf(reply);
    expect(batch).toHaveLength(2);
    batch.forEach((png, i) => expect(pngText(png)).toEqual(pngText(fixture(`serve-batch2.resp1-${i}.png`))));
    const stdoutOfBatch = p.stdoutSoFar();
    const single42 = imagesOf(await post(p.port, "/sdapi/v1/txt2img", FOX))[0] as Buffer;
    const single43 = imagesOf(await post(p.port, "/sdapi/v1/txt2img", { ...FOX, seed: 43 }))[0] as Buffer;
    expect(pixels(batch[0] as Buffer).equals(pixels(single42))).toBe(true);
    expect(pixels(batch[1] as Buffer).equals(pixels(single43))).toBe(true);
    expect(pixels(single42).equals(pixels(single43))).toBe(false);
    // deterministic: the same request gives the same bytes
    expect(single42.equals(batch[0] as Buffer)).toBe(true);
    expect(normalise(stdoutOfBatch)).toEqual(normalise(fixtureStdout("serve-batch2", p.port)));
  });

  it("serve-bad-request: every rejection as captured (status, content type, body bytes), printing nothing", async () => {
    const p = await serve();
    const before = p.stdoutSoFar().length;
    for (const rec of httpRecords("serve-bad-request")) {
      const body = rec.requestBodyRaw !== undefined ? rec.requestBodyRaw : rec.requestBody === null ? undefined : JSON.stringify(rec.requestBody);
      const reply = await request(p.port, rec.method, rec.path, body);
      expect({ n: rec.n, status: reply.status, type: reply.type }).toEqual({ n: rec.n, status: rec.status, type: rec.responseHeaders["content-type"] });
      expect(reply.body.toString()).toBe(rec.responseBody === "" ? "" : JSON.stringify(rec.responseBody));
      expect(reply.body.length).toBe(rec.responseBytes);
    }
    expect(p.stdoutSoFar().length).toBe(before);
    expect(p.stderrSoFar().length).toBe(0);
  });

  it("serve-port-in-use: a plain listener holds the port: `listening on`, then exit 0 with no error", async () => {
    const holder = net.createServer();
    const port = await new Promise<number>((resolve) => holder.listen(0, "127.0.0.1", () => resolve((holder.address() as net.AddressInfo).port)));
    try {
      const r = await start(fixtureArgs("serve-port-in-use", port), { cwd: workDir() }).done;
      expect(r.code).toBe(0);
      expect(r.signal).toBeNull();
      expect(r.stdout.toString()).toBe(fixtureStdout("serve-port-in-use", port));
      expect(r.stderr.length).toBe(0);
    } finally {
      holder.close();
    }
  });
});

describe("sd-server double: the port and the connections", () => {
  it("FAKE_SD_PORT_SHARED=1: a taken port is taken as shared (SO_REUSEPORT): it keeps running without serving", async () => {
    const holder = net.createServer((c) => c.end("HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nholder"));
    const port = await new Promise<number>((resolve) => holder.listen(0, "127.0.0.1", () => resolve((holder.address() as net.AddressInfo).port)));
    try {
      const p = start(fixtureArgs("serve-port-shared", port), { cwd: workDir(), env: { FAKE_SD_PORT_SHARED: "1" } });
      await p.waitForStdout(`listening on: http://127.0.0.1:${port}\n`);
      await new Promise((r) => setTimeout(r, 200));
      expect(p.child.exitCode).toBeNull();
      expect((await request(port, "GET", "/")).body.toString()).toBe("holder");
      p.child.kill("SIGTERM");
      expect((await p.done).signal).toBe("SIGTERM");
    } finally {
      holder.close();
    }
  });

  it("httplib's thread pool: a keep-alive connection holds its thread (FAKE_SD_HTTP_THREADS=1)", async () => {
    const p = await serve({ env: { FAKE_SD_HTTP_THREADS: "1" } });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      await new Promise<void>((resolve, reject) =>
        http.get({ host: "127.0.0.1", port: p.port, path: "/", agent }, (r) => (r.resume(), r.on("end", resolve))).on("error", reject),
      );
      setTimeout(() => agent.destroy(), 300);
      const t0 = performance.now();
      expect((await request(p.port, "GET", "/")).status).toBe(200);
      expect(performance.now() - t0).toBeGreaterThan(250);
    } finally {
      agent.destroy();
    }
  });
});

describe("sd-server double: one generation at a time, and no cancel", () => {
  it("serve-concurrent: a second request waits for the first; a GET is answered during a generation", async () => {
    const p = await serve({ env: { FAKE_SD_STEP_MS: "150" } });
    const first = post(p.port, "/sdapi/v1/txt2img", FOX);
    await p.waitForStdout("| 1/4 - ");
    const second = post(p.port, "/sdapi/v1/txt2img", { ...FOX, seed: 43 });
    const t0 = performance.now();
    const options = await request(p.port, "GET", "/sdapi/v1/options");
    const getMs = performance.now() - t0;
    expect(options.body.toString()).toBe('{"samples_format":"png","sd_model_checkpoint":"sd1-random"}');
    expect(getMs).toBeLessThan(300); // the generation still has ~450 ms to go
    expect(p.stdoutSoFar().toString()).not.toContain("generate_image completed");
    const [a, b] = await Promise.all([first, second]);
    expect([a.status, b.status]).toEqual([200, 200]);
    const text = p.stdoutSoFar().toString();
    const done1 = text.indexOf("generate_image completed");
    expect(text.indexOf("seed 43")).toBeGreaterThan(done1);
    expect(text.lastIndexOf("generate_image 64x64")).toBeGreaterThan(done1);
    expect(normalise(text)).toEqual(normalise(fixtureStdout("serve-concurrent", p.port)));
  });

  it("a client that disconnects does not cancel: the generation runs to the end, the next request is served", async () => {
    const p = await serve({ env: { FAKE_SD_STEP_MS: "40" } });
    const gone = request(p.port, "POST", "/sdapi/v1/txt2img", JSON.stringify({ ...FOX, steps: 6 }), (req) => {
      void p.waitForStdout("| 1/6 - ").then(() => req.destroy());
    });
    await expect(gone).rejects.toThrow();
    expect(p.stdoutSoFar().toString()).not.toContain("| 6/6 - ");
    await p.waitForStdout("generate_image completed in ");
    expect(p.stdoutSoFar().toString()).toContain("| 6/6 - ");
    const next = await post(p.port, "/sdapi/v1/txt2img", FOX);
    expect(next.status).toBe(200);
    expect(p.stderrSoFar().length).toBe(0);
  });

  it("--eager-load: the weights load before `listening on`; requests print no loading bars", async () => {
    const gpu = tempDir();
    const p = await serve({ extraArgs: ["--eager-load"], env: { FAKE_GPU_DIR: gpu } });
    const startup = p.stdoutSoFar().toString();
    expect(startup).toMatch(/\| 1130\/1130 - [\d.]+[MG]B\/s\x1b\[K\n\[INFO \] model_loader\.cpp:1304 - loading tensors completed/);
    expect(startup.indexOf("1130/1130")).toBeLessThan(startup.indexOf("total params memory size"));
    expect(runningDiffusions(gpu)).toEqual([p.child.pid]);
    const before = p.stdoutSoFar().length;
    expect((await post(p.port, "/sdapi/v1/txt2img", FOX)).status).toBe(200);
    expect(p.stdoutSoFar().subarray(before).toString()).not.toContain("#");
  });
});

describe("sd-server double: request fields as the real server reads them", () => {
  it("clamps steps to 1..100 and batch to 1..8, and ignores wrongly typed <sd_cpp_extra_args> fields", async () => {
    const p = await serve({ env: { FAKE_SD_STEP_MS: "1" } });
    const steps = async (body: unknown) => {
      const before = p.stdoutSoFar().length;
      const reply = await post(p.port, "/sdapi/v1/txt2img", body);
      expect(reply.status).toBe(200);
      const bars = normalise(p.stdoutSoFar().subarray(before)).filter((l) => l.startsWith("=|"));
      return { last: bars.at(-1)?.split(" ").at(-1), info: JSON.parse((JSON.parse(reply.body.toString()) as { info: string }).info) as Record<string, unknown> };
    };
    expect((await steps({ ...FOX, steps: 0 })).last).toBe("1/1");
    const many = await steps({ ...FOX, steps: 500 });
    expect(many.last).toBe("100/100");
    expect(many.info.steps).toBe(100);
    // a string where a number belongs, inside the extra args: skipped without a word
    const extra = await steps({ ...FOX, steps: 3, prompt: 'a fox<sd_cpp_extra_args>{"sample_params":{"sample_steps":"four"},"seed":7}</sd_cpp_extra_args>' });
    expect(extra.last).toBe("3/3");
    expect(extra.info.seed).toBe(7);
    expect(extra.info.prompt).toBe("a fox");
    const batch = await post(p.port, "/sdapi/v1/txt2img", { ...FOX, steps: 1, batch_size: 20 });
    expect(imagesOf(batch)).toHaveLength(8);
    // float values of int fields are truncated; booleans count as numbers
    const sized = await post(p.port, "/sdapi/v1/txt2img", { ...FOX, steps: 1, width: 128.9, height: true });
    expect(sized.status).toBe(200);
    const png = PNG.sync.read(imagesOf(sized)[0] as Buffer);
    expect([png.width, png.height]).toEqual([128, 64]); // 1 → aligned up to 64
    expect(p.stdoutSoFar().toString()).toContain("[WARN ] stable-diffusion.cpp:4154 - align generation request up 128x1 to 128x64 (multiple=64)\n");
    expect(p.stderrSoFar().length).toBe(0);
  });

  it("answers type errors with nlohmann's 500 and keeps the echoed parameters' number types", async () => {
    const p = await serve({ env: { FAKE_SD_STEP_MS: "1" } });
    const r1 = await post(p.port, "/sdapi/v1/txt2img", { ...FOX, prompt: 5 });
    expect([r1.status, r1.body.toString()]).toEqual([500, '{"error":"server_error","message":"[json.exception.type_error.302] type must be string, but is number"}']);
    const r2 = await request(p.port, "POST", "/sdapi/v1/txt2img", "[1,2]");
    expect(r2.body.toString()).toBe('{"error":"server_error","message":"[json.exception.type_error.306] cannot use value() with array"}');
    const r3 = await request(p.port, "POST", "/sdapi/v1/txt2img", '{"prompt":"a fox","steps":1,"width":64,"height":64,"seed":1,"cfg_scale":7.0,"extra":[1e2,0.5]}');
    expect(r3.status).toBe(200);
    const body = r3.body.toString();
    expect(body).toContain('"parameters":{"cfg_scale":7.0,"extra":[100.0,0.5],"height":64,"prompt":"a fox","seed":1,"steps":1,"width":64}');
    expect(body).toContain('\\"cfg_scale\\":7.0');
  });

  it("a seed < 0 is rand() after srand(time): two requests in the same second get the same seed", async () => {
    const p = await serve({ env: { FAKE_SD_STEP_MS: "1" } });
    const seeds: number[] = [];
    for (let i = 0; i < 2; i++) {
      // align on a second boundary's start so both land in the same second
      if (i === 0) await new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000) + 5));
      const reply = await post(p.port, "/sdapi/v1/txt2img", { prompt: "a fox", width: 64, height: 64, steps: 1 });
      seeds.push((JSON.parse((JSON.parse(reply.body.toString()) as { info: string }).info) as { seed: number }).seed);
    }
    expect(seeds[0]).toBeGreaterThanOrEqual(0);
    expect(seeds[0]).toBeLessThan(2 ** 31);
    expect(seeds[1]).toBe(seeds[0]);
  });

  it("a lora is found only after GET /sdapi/v1/loras has filled the cache", async () => {
    const cwd = workDir();
    fs.mkdirSync(path.join(cwd, "loras/sub"), { recursive: true });
    fs.writeFileSync(path.join(cwd, "loras/sub/fox.safetensors"), "");
    const p = await serve({ cwd, extraArgs: ["--lora-model-dir", "loras"], env: { FAKE_SD_STEP_MS: "1" } });
    const withLora = { ...FOX, steps: 1, lora: [{ path: "sub/fox.safetensors", multiplier: 0.5 }] };
    const before = await post(p.port, "/sdapi/v1/txt2img", withLora);
    expect([before.status, before.body.toString()]).toEqual([400, '{"error":"invalid lora path: sub/fox.safetensors"}']);
    const list = await request(p.port, "GET", "/sdapi/v1/loras");
    expect(list.body.toString()).toBe('[{"name":"fox","path":"sub/fox.safetensors"}]');
    const after = await post(p.port, "/sdapi/v1/txt2img", withLora);
    expect(after.status).toBe(200);
    expect(pngText(imagesOf(after)[0] as Buffer).get("parameters")).toContain('"loras":[{"is_high_noise":false,"multiplier":0.5,"name":"fox.safetensors"}]');
    expect(p.stdoutSoFar().toString()).toContain("apply_loras completed, taking 0.00s\n");
  });

  it("img2img: the init image sets the size; denoising_strength shortens the sampling", async () => {
    const p = await serve({ env: { FAKE_SD_STEP_MS: "1" } });
    const init = PNG.sync.write(new PNG({ width: 128, height: 64 })).toString("base64");
    const reply = await post(p.port, "/sdapi/v1/img2img", { prompt: "a fox", steps: 8, seed: 3, init_images: [init], denoising_strength: 0.5 });
    expect(reply.status).toBe(200);
    const png = PNG.sync.read(imagesOf(reply)[0] as Buffer);
    expect([png.width, png.height]).toEqual([128, 64]);
    const lines = normalise(p.stdoutSoFar());
    expect(lines).toContain("[INFO ] common.cpp:2205 - set width x height to 128 x 64");
    expect(lines).toContain("[INFO ] stable-diffusion.cpp:4969 - target t_enc is 4 steps");
    expect(lines.filter((l) => l.startsWith("=|")).at(-1)).toMatch(/ 5\/5$/);
    const info = JSON.parse((JSON.parse(reply.body.toString()) as { info: string }).info) as Record<string, unknown>;
    expect(info.denoising_strength).toBe(0.5);
  });

  it("the async API: a job is queued, generated under the same mutex, and cannot be cancelled while generating", async () => {
    const p = await serve({ env: { FAKE_SD_STEP_MS: "30" } });
    const submit = await post(p.port, "/sdcpp/v1/img_gen", { prompt: "a red fox", width: 64, height: 64, sample_params: { sample_steps: 4 } });
    expect(submit.status).toBe(202);
    const job = JSON.parse(submit.body.toString()) as { id: string; poll_url: string };
    expect(Object.keys(job)).toEqual(["created", "id", "kind", "poll_url", "status"]);
    expect(job.id).toMatch(/^job_[0-9a-f]+_00000000$/);
    await p.waitForStdout("| 1/4 - ");
    const cancel = await request(p.port, "POST", `${job.poll_url}/cancel`);
    expect([cancel.status, cancel.body.toString()]).toEqual([409, '{"error":"job is currently generating and cannot be interrupted yet"}']);
    await p.waitForStdout("generate_image completed");
    await new Promise((r) => setTimeout(r, 50));
    const done = JSON.parse((await request(p.port, "GET", job.poll_url)).body.toString()) as {
      status: string;
      result: { images: { index: number; b64_json: string }[]; output_format: string };
    };
    expect(done.status).toBe("completed");
    const png = Buffer.from((done.result.images[0] as { b64_json: string }).b64_json, "base64");
    expect(pngText(png).get("parameters")).toContain("Seed: 42,");
  });
});

describe("sd-server double: failures and signals", () => {
  it("SIGTERM ends it at once; with FAKE_GPU_DIR the marker is held from the first load and gone after", async () => {
    const gpu = tempDir();
    const p = await serve({ env: { FAKE_GPU_DIR: gpu, FAKE_SD_STEP_MS: "40" } });
    expect(gpuMarkers(gpu)).toEqual([]); // nothing loaded yet
    expect(readSpawns(gpu).map((s) => s.pid)).toEqual([p.child.pid]);
    void post(p.port, "/sdapi/v1/txt2img", { ...FOX, steps: 50 }).catch(() => {});
    await p.waitForStdout("| 1/50 - ");
    // the Ollama double's view: sd-<pid>.running, like an sd-cli's
    expect(runningDiffusions(gpu)).toEqual([p.child.pid]);
    p.child.kill("SIGTERM");
    const r = await p.done;
    expect(r.signal).toBe("SIGTERM");
    expect(r.code).toBeNull();
    expect(gpuMarkers(gpu)).toEqual([]);
    expect(r.stdout.toString()).not.toContain("sampling completed");
    expect(readViolations(gpu)).toEqual([]);
  });

  it("FAKE_SD_CRASH_AT_STEP: CUDA error lines and SIGABRT mid-request; the client gets no response", async () => {
    const gpu = tempDir();
    const p = await serve({ env: { FAKE_SD_CRASH_AT_STEP: "3", FAKE_GPU_DIR: gpu } });
    await expect(post(p.port, "/sdapi/v1/txt2img", FOX)).rejects.toThrow(/socket hang up|ECONNRESET/);
    const r = await p.done;
    expect(r.signal).toBe("SIGABRT");
    expect(normalise(r.stdout).filter((l) => l.startsWith("=|")).map((l) => l.slice(-3))).toEqual(["1/4", "2/4"]);
    expect(r.stderr.toString()).toMatch(/^\[ERROR\] CUDA error: .*\n(\[ERROR\] .*\n)*\S+ggml-cuda\.cu:\d+: CUDA error\n$/);
    expect(gpuMarkers(gpu)).toEqual([]);
  });

  it("FAKE_SD_OOM: the UNet does not fit: CUDA out-of-memory lines, 500, and the server keeps serving", async () => {
    const p = await serve({ env: { FAKE_SD_OOM: "1" } });
    const reply = await post(p.port, "/sdapi/v1/txt2img", FOX);
    expect([reply.status, reply.type, reply.body.toString()]).toEqual([500, "application/json", '{"error":"generate_image returned no results"}']);
    const err = p.stderrSoFar().toString();
    expect(err).toContain("[ERROR] ggml_backend_cuda_buffer_type_alloc_buffer: allocating 1640.25 MiB on device 0: cudaMalloc failed: out of memory\n");
    expect(err).toContain("[ERROR] model_manager.cpp:737  - model manager alloc params backend buffer failed, size = 1640.25MB\n");
    expect(err).toMatch(/\[ERROR\] stable-diffusion\.cpp:5716 - sampling for image 1\/1 failed after [\d.]+s\n$/);
    expect(p.stdoutSoFar().toString()).toMatch(/generating image: 1\/1 - seed 42\n$/);
    expect((await request(p.port, "GET", "/")).status).toBe(200);
    expect(p.child.exitCode).toBeNull();
  });

  it("an LLM resident when the weights load: a violation, out of memory, and a good image once it is gone", async () => {
    const gpu = tempDir();
    setResidentModels(gpu, ["qwen3:8b"]);
    const p = await serve({ env: { FAKE_GPU_DIR: gpu } });
    const first = await post(p.port, "/sdapi/v1/txt2img", FOX);
    expect(first.status).toBe(500);
    expect(p.stderrSoFar().toString()).toContain("cudaMalloc failed: out of memory");
    const violations = readViolations(gpu);
    expect(violations).toHaveLength(1);
    expect(violations[0]?.by).toBe("sd-server");
    expect(violations[0]?.what).toContain("qwen3:8b");
    expect(gpuMarkers(gpu)).toEqual([]);
    setResidentModels(gpu, []);
    const second = await post(p.port, "/sdapi/v1/txt2img", FOX);
    expect(second.status).toBe(200);
    expect(runningDiffusions(gpu)).toEqual([p.child.pid]);
  });

  it("the fake Ollama sees its marker like an sd-cli's: an LLM loaded while it holds the weights is a violation", async () => {
    const gpu = tempDir();
    const ollama = await startFakeOllama({ installed: ["qwen2.5:3b"], gpuDir: gpu });
    try {
      const p = await serve({ env: { FAKE_GPU_DIR: gpu } });
      expect((await post(p.port, "/sdapi/v1/txt2img", FOX)).status).toBe(200);
      // the weights stay loaded (and the marker held) between requests
      expect(runningDiffusions(gpu)).toEqual([p.child.pid]);
      const chat = { model: "qwen2.5:3b", messages: [{ role: "user", content: "hi" }], stream: false };
      expect((await fetch(`${ollama.url}/api/chat`, { method: "POST", body: JSON.stringify(chat) })).status).toBe(200);
      expect(readViolations(gpu).map((v) => v.by)).toEqual(["ollama"]);
      p.child.kill("SIGTERM");
      await p.done;
      expect(runningDiffusions(gpu)).toEqual([]);
    } finally {
      await ollama.close();
    }
  });

  it("--eager-load with an LLM resident: out of memory at start-up, exit 1 before listening", async () => {
    const gpu = tempDir();
    setResidentModels(gpu, ["qwen3:8b"]);
    const r = await start(["-m", "models/sd1-random.safetensors", "--listen-port", String(await freePort()), "--eager-load"], {
      cwd: workDir(),
      env: { FAKE_GPU_DIR: gpu },
    }).done;
    expect(r.code).toBe(1);
    expect(r.stdout.toString()).not.toContain("listening on");
    expect(r.stderr.toString()).toMatch(/cudaMalloc failed: out of memory\n[\s\S]*model params eager load failed\n\[ERROR\] main\.cpp:92 {3}- new_sd_ctx_t failed\n$/);
    expect(readViolations(gpu)[0]?.by).toBe("sd-server");
  });
});

describe("sd-server double: timing knobs", () => {
  it("FAKE_SD_TIMESTAMPS: one line per step, image and request", async () => {
    const stamps = path.join(tempDir(), "stamps.jsonl");
    const p = await serve({ env: { FAKE_SD_TIMESTAMPS: stamps } });
    await post(p.port, "/sdapi/v1/txt2img", { ...FOX, steps: 2, batch_size: 2 });
    await post(p.port, "/sdapi/v1/txt2img", { ...FOX, steps: 1 });
    const lines = fs
      .readFileSync(stamps, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { step: number; image: number; request: number; at: number });
    expect(lines.map((l) => `${l.request}:${l.image}:${l.step}`)).toEqual(["1:1:1", "1:1:2", "1:2:1", "1:2:2", "2:1:1"]);
    expect(lines.every((l, i) => i === 0 || l.at >= (lines[i - 1]?.at ?? 0))).toBe(true);
  });

  it("FAKE_SD_REAL_TIMING replays the capture's costs: the first request pays the load, later ones do not", async () => {
    const p = await serve({ env: { FAKE_SD_REAL_TIMING: "0.05", FAKE_SD_LISTEN_MS: "", FAKE_SD_STEP_MS: "", FAKE_SD_LOAD_MS: "", FAKE_SD_DECODE_MS: "", FAKE_SD_COND_MS: "" } });
    const time = async () => {
      const t0 = performance.now();
      expect((await post(p.port, "/sdapi/v1/txt2img", FOX)).status).toBe(200);
      return performance.now() - t0;
    };
    const first = await time();
    const second = await time();
    // at scale 1: 10.7 s and 4.1 s; at 0.05: ~535 ms and ~205 ms
    expect(first).toBeGreaterThan(480);
    expect(second).toBeLessThan(first / 1.8);
    expect(second).toBeGreaterThan(180);
  });
});
