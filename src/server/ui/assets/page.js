// DiffuGen's operator page: one small script, no framework. State comes from the JSON
// endpoints once (/v1/jobs, /health), then from one event stream (/v1/events), read with
// fetch so that the API key travels as a header, never in a URL. No polling: a local
// one-second clock only moves the timeline and the "waited" counters.
// @ts-check

const KEY_STORE = "diffugen.apiKey";
const WINDOW_MS = 15 * 60_000;
const JOBS_SHOWN = 30;

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/**
 * A DOM element: h("p", { class: "x" }, "text", child).
 * @param {string} tag
 * @param {Record<string, any>} [attrs]
 * @param {...(Node | string | null | undefined | false)} children
 */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) if (child !== null && child !== undefined && child !== false) el.append(child);
  return el;
}

// ------------------------------------------------------------------ the API

let apiKey = sessionStorage.getItem(KEY_STORE) ?? "";

class AuthError extends Error {}

/**
 * fetch() with the key. A 401 shows the login form and throws AuthError.
 * @param {string} path
 * @param {RequestInit} [init]
 */
async function api(path, init = {}) {
  const headers = new Headers(init.headers);
  if (apiKey) headers.set("Authorization", `Bearer ${apiKey}`);
  const res = await fetch(path, { ...init, headers });
  if (res.status === 401) {
    const message = await errorText(res);
    showLogin(apiKey ? message : "");
    throw new AuthError(message);
  }
  return res;
}

/** @param {Response} res */
async function errorText(res) {
  try {
    const body = await res.json();
    return body?.error?.message ?? body?.error ?? `HTTP ${res.status}`;
  } catch {
    return `HTTP ${res.status}`;
  }
}

/** @param {string} path */
async function getJson(path) {
  const res = await api(path);
  if (!res.ok) throw new Error(await errorText(res));
  return res.json();
}

/**
 * The messages of an event stream, as they arrive.
 * @param {ReadableStream<Uint8Array>} body
 */
async function* sseMessages(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      /** @type {{ event: string, data: string[], id: string | undefined }} */
      const message = { event: "message", data: [], id: undefined };
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") message.event = value;
        else if (field === "data") message.data.push(value);
        else if (field === "id") message.id = value;
      }
      if (message.data.length > 0) yield { event: message.event, id: message.id, data: message.data.join("\n") };
    }
  }
}

// ------------------------------------------------------------------ state

const state = {
  /** @type {any} */ holder: { kind: "idle" },
  llm: "unknown",
  llmSince: Date.now(),
  /** @type {any[]} */ queue: [],
  /** @type {Map<string, any>} */ spans: new Map(),
  /** Jobs by id, as GET /v1/jobs shows them, plus what the stream added. @type {Map<string, any>} */ jobs: new Map(),
  /** Running jobs' live progress. @type {Map<string, any>} */ live: new Map(),
  /** Gateway calls by id. @type {Map<string, any>} */ calls: new Map(),
  /** @type {any[]} */ resident: [],
  /** @type {{ used: number, total: number, llm?: number, diffusion?: number } | null} */ vram: null,
};

// ------------------------------------------------------------------ start, log in

function init() {
  $("login-form").addEventListener("submit", onLogin);
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    location.reload();
  });
  $("draw-form").addEventListener("submit", onDraw);
  void start();
}

let following = false;

/** Reads the jobs (which also tells whether the key is right), then follows the stream. */
async function start() {
  try {
    await loadJobs();
  } catch (err) {
    if (err instanceof AuthError) return;
    setConn("off", `cannot reach DiffuGen: ${err instanceof Error ? err.message : err}`);
    return;
  }
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = apiKey === "";
  if (following) return;
  following = true;
  void follow();
  void loadHealth();
  setInterval(tick, 1000);
}

/** @param {string} message */
function showLogin(message) {
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  setConn("off", "locked");
  /** @type {HTMLInputElement} */ ($("login-key")).focus();
}

/** @param {SubmitEvent} event */
async function onLogin(event) {
  event.preventDefault();
  apiKey = /** @type {HTMLInputElement} */ ($("login-key")).value.trim();
  sessionStorage.setItem(KEY_STORE, apiKey);
  $("login-error").textContent = "";
  await start();
}

/**
 * @param {"off" | "live" | "waiting"} kind
 * @param {string} text
 */
function setConn(kind, text) {
  const el = $("conn");
  el.dataset.state = kind;
  el.textContent = text;
}

// ------------------------------------------------------------------ the stream

let lastEventId = "";

/** Follows /v1/events for as long as the page is open; after a drop, resumes after the last id. */
async function follow() {
  let delay = 500;
  for (;;) {
    try {
      /** @type {Record<string, string>} */
      const headers = { Accept: "text/event-stream" };
      if (lastEventId) headers["Last-Event-ID"] = lastEventId;
      const res = await api("/v1/events", { headers });
      if (!res.ok || !res.body) throw new Error(await errorText(res));
      setConn("live", "live");
      delay = 500;
      for await (const message of sseMessages(res.body)) {
        if (message.id) lastEventId = message.id;
        onEvent(message.event, JSON.parse(message.data));
      }
    } catch (err) {
      if (err instanceof AuthError) return;
    }
    setConn("waiting", "reconnecting…");
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 10_000);
  }
}

/**
 * @param {string} type
 * @param {any} data
 */
function onEvent(type, data) {
  switch (type) {
    case "reset":
      // Events were missed: the snapshot that follows is the truth, and the job list is read again.
      void loadJobs();
      return;
    case "snapshot":
      state.holder = data.gpu.holder;
      state.llm = data.gpu.llm;
      state.llmSince = data.gpu.llm_since;
      state.queue = data.gpu.queue;
      state.spans = new Map(data.spans.map((/** @type {any} */ s) => [s.id, s]));
      state.live = new Map(data.jobs.map((/** @type {any} */ j) => [j.job_id, j]));
      for (const call of data.calls) state.calls.set(call.id, call);
      renderAll();
      return;
    case "gpu.holder":
      state.holder = data.holder;
      renderNow();
      return;
    case "gpu.llm":
      state.llm = data.state;
      state.llmSince = data.at;
      renderNow();
      // The models in VRAM (and their sizes) changed: read them again, once.
      if (data.state === "resident" || data.state === "unloaded") void loadHealth();
      return;
    case "gpu.queue":
      state.queue = data.queue;
      renderQueue();
      return;
    case "timeline.span":
      state.spans.set(data.span.id, data.span);
      renderTimeline();
      return;
    case "gateway.call":
      state.calls.set(data.call.id, data.call);
      return;
    case "job.started":
      upsertJob(data.job);
      state.live.set(data.job.id, { job_id: data.job.id, phase: "queued", progress: 0, message: "Queued" });
      renderJobs();
      return;
    case "job.progress": {
      const live = state.live.get(data.job.job_id) ?? {};
      state.live.set(data.job.job_id, { ...live, ...data.job });
      updateJob(data.job.job_id);
      if (holderJobIds().includes(data.job.job_id)) renderNow();
      return;
    }
    case "job.preview": {
      const live = state.live.get(data.job_id);
      if (live) live.preview = { b64_json: data.b64_json, width: data.width, height: data.height };
      updateJob(data.job_id);
      return;
    }
    case "job.refined":
      patchJob(data.job_id, { refined: data.prompt });
      return;
    case "job.params":
      patchJob(data.job_id, { params: { model: data.model, ...data.params } });
      return;
    case "job.image": {
      const job = state.jobs.get(data.job_id);
      if (job) job.images = [...(job.images ?? []), data];
      updateJob(data.job_id);
      return;
    }
    case "job.outcome":
      state.live.delete(data.job.id);
      upsertJob(data.job);
      renderJobs();
      return;
    default:
      return;
  }
}

// ------------------------------------------------------------------ JSON endpoints

async function loadJobs() {
  const list = await getJson(`/v1/jobs?limit=${JOBS_SHOWN}`);
  for (const job of list.data) upsertJob(job, true);
  renderJobs();
}

let healthLoading = false;

/** /health: the models for the form, the LLMs in VRAM with their sizes, and the VRAM ledger when there is one. */
async function loadHealth() {
  if (healthLoading) return;
  healthLoading = true;
  try {
    const health = await getJson("/health");
    state.resident = health.ollama?.resident ?? [];
    state.vram = vramOf(health) ?? state.vram;
    fillModels(health.models ?? []);
    if (!state.vram) state.vram = vramOf(await getJson("/stats"));
    renderNow();
  } catch {
    // The panels stay as they are; the stream goes on.
  } finally {
    healthLoading = false;
  }
}

/**
 * A VRAM figure in /health or /stats (the VRAM ledger), whatever its units: bytes, MiB or MB.
 * @param {any} body
 */
function vramOf(body) {
  // /health and /stats put the card's last reading under vram.card (null without a ledger).
  const outer = body?.vram ?? body?.gpu?.vram ?? body?.scheduler?.vram;
  const ledger = outer && typeof outer === "object" && "card" in outer ? outer.card : outer;
  if (!ledger || typeof ledger !== "object") return null;
  /** @param {string} name */
  const read = (name) => {
    for (const [key, value] of Object.entries(ledger)) {
      if (typeof value !== "number" && typeof value?.bytes !== "number") continue;
      const lower = key.toLowerCase();
      if (!lower.startsWith(name)) continue;
      const n = typeof value === "number" ? value : value.bytes;
      if (/mib|mb/.test(lower)) return n * 1024 * 1024;
      if (/gib|gb/.test(lower)) return n * 1024 ** 3;
      return n;
    }
    return undefined;
  };
  const total = read("total");
  if (!total) return null;
  const free = read("free");
  const used = read("used") ?? (free !== undefined ? total - free : undefined);
  if (used === undefined) return null;
  // "other": what the ledger cannot name, the drawing above all (its /metrics kind is `diffusion`).
  return { total, used, llm: read("llm"), diffusion: read("diffusion") ?? read("other") };
}

/** @param {{ name: string, available: boolean }[]} models */
function fillModels(models) {
  const select = /** @type {HTMLSelectElement} */ ($("draw-model"));
  if (select.options.length > 1) return;
  for (const model of models) select.append(h("option", { value: model.name, disabled: !model.available }, model.available ? model.name : `${model.name} (files missing)`));
}

// ------------------------------------------------------------------ jobs

/**
 * @param {any} job
 * @param {boolean} [fromList] a listed job does not overwrite what the stream already said of it
 */
function upsertJob(job, fromList = false) {
  const known = state.jobs.get(job.id);
  if (known && fromList && known.status !== "running") return;
  // Jobs started in the same second keep the order they were heard of (the list: newest first).
  const heard = known?.heard ?? (fromList ? -++listed : ++heardOf);
  state.jobs.set(job.id, { ...known, ...job, heard, images: job.result?.images ?? known?.images });
  if (job.status === "running" && !state.live.has(job.id)) {
    state.live.set(job.id, { job_id: job.id, phase: job.phase, progress: job.progress, message: job.message });
  }
}

/**
 * @param {string} id
 * @param {Record<string, any>} patch
 */
function patchJob(id, patch) {
  const job = state.jobs.get(id);
  if (!job) return;
  Object.assign(job, patch);
  updateJob(id);
}

let heardOf = 0;
let listed = 0;

function jobsNewestFirst() {
  return [...state.jobs.values()].sort((a, b) => b.created_at - a.created_at || b.heard - a.heard).slice(0, JOBS_SHOWN);
}

function renderJobs() {
  const list = $("job-list");
  const jobs = jobsNewestFirst();
  const rows = new Map([...list.children].map((li) => [/** @type {HTMLElement} */ (li).dataset.id, li]));
  list.replaceChildren(...jobs.map((job) => rows.get(job.id) ?? jobRow(job)));
  for (const job of jobs) updateJob(job.id);
  $("jobs-empty").hidden = jobs.length > 0;
}

/** @param {any} job */
function jobRow(job) {
  const id = job.id;
  return h(
    "li",
    { class: "job", "data-id": id },
    h("button", { type: "button", class: "thumb", "aria-label": "Open this job", onclick: () => openJob(id) }),
    h(
      "div",
      { class: "job-body" },
      h("p", { class: "prompt" }),
      h("p", { class: "refined small" }),
      h("p", { class: "meta small" }),
      h("div", { class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-label": "Progress" }, h("span")),
      h("p", { class: "status small", "aria-live": "polite" }),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "cancel", onclick: () => cancelJob(id) }, "Cancel"),
        h("button", { type: "button", class: "quiet reuse", onclick: () => reuseJob(id) }, "Use these settings"),
      ),
    ),
  );
}

/** @param {string} id */
function updateJob(id) {
  const job = state.jobs.get(id);
  const li = /** @type {HTMLElement | null} */ (document.querySelector(`li.job[data-id="${CSS.escape(id)}"]`));
  if (!job || !li) return;
  const live = state.live.get(id);
  const running = job.status === "running";
  li.dataset.status = running ? "running" : job.status;
  /** @param {string} selector */
  const part = (selector) => /** @type {HTMLElement} */ (li.querySelector(selector));

  const thumb = part(".thumb");
  const image = job.images?.[0];
  const preview = running ? live?.preview : undefined;
  const src = image?.url ?? (preview ? `data:image/png;base64,${preview.b64_json}` : "");
  const img = thumb.querySelector("img");
  const alt = image ? "The image" : "Latest preview";
  // The same <img> takes each new preview: it keeps showing the last one until the next is decoded.
  if (src && img) {
    if (img.getAttribute("src") !== src) img.setAttribute("src", src);
    img.alt = alt;
  } else if (src) thumb.replaceChildren(h("img", { src, alt }));
  else thumb.replaceChildren(h("span", { class: "placeholder" }, running ? "…" : "—"));

  const written = job.request?.prompt ?? "";
  part(".prompt").textContent = written;
  const refined = job.refined ?? job.result?.prompt;
  part(".refined").textContent = refined && refined !== written ? `refined: ${refined}` : "";
  part(".meta").textContent = jobFacts(job).join(" · ");

  const progress = part(".progress");
  const percent = Math.round(live?.progress ?? job.progress ?? 0);
  progress.hidden = !running;
  progress.setAttribute("aria-valuenow", String(percent));
  /** @type {HTMLElement} */ (progress.firstElementChild).style.width = `${percent}%`;
  part(".status").textContent = running ? liveLine(live ?? job) : job.status === "succeeded" ? "" : (job.error?.message ?? job.message ?? "");
  part(".cancel").hidden = !running;
}

/** @param {any} job */
function jobFacts(job) {
  const p = { ...job.request, ...job.params, ...job.result?.parameters };
  const model = job.result?.model ?? job.params?.model ?? job.request?.model ?? "default model";
  const facts = [model];
  if (p.width && p.height) facts.push(`${p.width}×${p.height}`);
  else if (p.size) facts.push(p.size);
  if (p.steps) facts.push(`${p.steps} steps`);
  if (p.seed !== undefined && p.seed !== null) facts.push(`seed ${p.seed}`);
  if (job.finished_at && job.created_at) facts.push(duration((job.finished_at - job.created_at) * 1000));
  facts.push(job.status === "running" ? "running" : job.status);
  return facts;
}

/** @param {any} live */
function liveLine(live) {
  const step = live.step;
  if (step?.current && step?.total) {
    const eta = step.eta_seconds !== undefined && step.eta_seconds !== null ? ` · ETA ${duration(step.eta_seconds * 1000)}` : "";
    const backend = live.backend ? ` · ${live.backend === "server" ? "sd-server" : "sd-cli"}` : "";
    return `Step ${step.current}/${step.total}${eta}${backend}`;
  }
  return live.message ?? live.phase ?? "";
}

/** @param {string} id */
async function cancelJob(id) {
  try {
    const res = await api(`/v1/jobs/${encodeURIComponent(id)}/cancel`, { method: "POST" });
    if (res.ok) upsertJob(await res.json());
    updateJob(id);
  } catch {
    // The stream tells how it ended.
  }
}

/** @param {string} id */
function reuseJob(id) {
  const job = state.jobs.get(id);
  if (!job) return;
  const p = { ...job.request, ...job.result?.parameters };
  /** @param {string} field @param {any} value */
  const set = (field, value) => {
    /** @type {HTMLInputElement} */ ($(field)).value = value === undefined || value === null ? "" : String(value);
  };
  set("draw-prompt", job.request?.prompt ?? "");
  set("draw-model", job.result?.model ?? job.request?.model ?? "");
  set("draw-size", p.width && p.height ? `${p.width}x${p.height}` : "");
  set("draw-steps", p.steps);
  set("draw-seed", p.seed);
  $("draw").scrollIntoView({ behavior: "smooth" });
  /** @type {HTMLTextAreaElement} */ ($("draw-prompt")).focus();
}

/** @param {SubmitEvent} event */
async function onDraw(event) {
  event.preventDefault();
  const form = /** @type {HTMLFormElement} */ (event.currentTarget);
  const data = new FormData(form);
  /** @type {Record<string, unknown>} */
  const body = { prompt: String(data.get("prompt") ?? "").trim(), refine: data.get("refine") === "on" };
  for (const name of ["model", "size"]) if (data.get(name)) body[name] = String(data.get(name));
  for (const name of ["steps", "seed"]) if (data.get(name) !== "" && data.get(name) !== null) body[name] = Number(data.get(name));
  const button = /** @type {HTMLButtonElement} */ ($("draw-submit"));
  button.disabled = true;
  $("draw-error").textContent = "";
  try {
    const res = await api("/v1/jobs", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    if (!res.ok) throw new Error(await errorText(res));
    upsertJob(await res.json());
    renderJobs();
  } catch (err) {
    if (!(err instanceof AuthError)) $("draw-error").textContent = err instanceof Error ? err.message : String(err);
  } finally {
    button.disabled = false;
  }
}

// ------------------------------------------------------------------ one job, opened

/** @type {AbortController | undefined} */
let dialogStream;

/** @param {string} id */
async function openJob(id) {
  const job = state.jobs.get(id);
  if (!job) return;
  const dialog = /** @type {HTMLDialogElement} */ ($("job-dialog"));
  $("dialog-title").textContent = job.request?.prompt || id;
  const images = job.images ?? [];
  $("dialog-images").replaceChildren(...images.map((/** @type {any} */ image) => h("a", { href: image.url, target: "_blank", rel: "noopener" }, h("img", { src: image.url, alt: `Image ${image.index + 1}`, width: image.width, height: image.height }))));
  const refined = job.refined ?? job.result?.prompt;
  const facts = [["Job", id], ["Prompt as written", job.request?.prompt], ["Prompt that drew", refined], ["Negative prompt", job.result?.negative_prompt], ["Settings", jobFacts(job).join(" · ")], ["Outcome", job.error?.message ?? job.status]];
  $("dialog-facts").replaceChildren(...facts.filter(([, v]) => v).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  const events = $("dialog-events");
  events.replaceChildren();
  dialog.addEventListener("close", () => dialogStream?.abort(), { once: true });
  if (!dialog.open) dialog.showModal();
  dialogStream?.abort();
  dialogStream = new AbortController();
  try {
    const res = await api(`/v1/jobs/${encodeURIComponent(id)}/events`, { headers: { Accept: "text/event-stream" }, signal: dialogStream.signal });
    if (!res.ok || !res.body) return;
    for await (const message of sseMessages(res.body)) {
      if (message.event === "preview") continue;
      const data = JSON.parse(message.data);
      const at = data.at ? new Date(data.at).toLocaleTimeString() : "";
      const said = message.event === "end" ? data.status : (data.message ?? data.status ?? "");
      events.append(h("li", {}, h("time", {}, at), ` ${message.event}: `, said));
      if (message.event === "end") break;
    }
  } catch {
    // Closed, or the connection dropped: what was read stays.
  }
}

// ------------------------------------------------------------------ now

function holderJobIds() {
  const holder = state.holder;
  if (holder.kind === "diffusion") return [holder.job_id];
  if (holder.kind === "llm") return holder.job_ids ?? [];
  return [];
}

/** @param {string} id */
function describeLease(id) {
  const call = state.calls.get(id);
  if (call) return `${call.route} ${call.model}`;
  const job = state.jobs.get(id);
  if (job) return `${job.mode === "chat" ? "chat reply" : "prompt refinement"} for “${short(job.request?.prompt ?? id, 60)}”`;
  return id;
}

function renderNow() {
  const holder = state.holder;
  const box = $("holder");
  box.dataset.kind = holder.kind;
  if (holder.kind === "diffusion") {
    const job = state.jobs.get(holder.job_id);
    const live = state.live.get(holder.job_id);
    const model = job?.params?.model ?? job?.request?.model ?? "the image model";
    const backend = live?.backend ? (live.backend === "server" ? "sd-server" : "sd-cli") : "sd.cpp";
    box.replaceChildren(
      h("p", { class: "who" }, h("strong", {}, "Diffusion"), ` holds the GPU: ${model} on ${backend}`),
      h("p", { class: "small" }, `“${short(job?.request?.prompt ?? holder.job_id, 90)}”`),
      h("p", { class: "small step" }, live ? liveLine(live) : ""),
    );
  } else if (holder.kind === "llm") {
    box.replaceChildren(
      h("p", { class: "who" }, h("strong", {}, "The LLM"), ` holds the GPU: ${holder.leases} call${holder.leases === 1 ? "" : "s"}`),
      h("ul", { class: "small" }, ...holderJobIds().map((id) => h("li", {}, describeLease(id)))),
      residentLine(),
    );
  } else {
    box.replaceChildren(h("p", { class: "who" }, h("strong", {}, "Idle"), state.llm === "resident" || state.llm === "unknown" ? ": the LLM waits in VRAM" : ""), residentLine());
  }
  $("llm").textContent = `LLM: ${llmWords[state.llm] ?? state.llm}, since ${new Date(state.llmSince).toLocaleTimeString()}`;
  $("llm").dataset.state = state.llm;
  renderVram();
  renderQueue();
}

/** @type {Record<string, string>} */
const llmWords = {
  unknown: "not touched yet (loaded as Ollama left it)",
  resident: "in VRAM",
  unloading: "leaving VRAM",
  unloaded: "out of VRAM (diffusion has the card)",
  loading: "coming back into VRAM",
  failed: "in trouble (the last unload or reload failed)",
};

function residentLine() {
  if (state.resident.length === 0) return h("p", { class: "small" }, "No LLM in VRAM (Ollama's /api/ps).");
  return h("p", { class: "small" }, "In VRAM: ", state.resident.map((/** @type {any} */ m) => `${m.name} (${gb(m.sizeVramBytes ?? m.size_vram_bytes ?? m.sizeBytes)})`).join(", "));
}

function renderVram() {
  const vram = state.vram;
  $("vram").hidden = !vram;
  if (!vram) return;
  const pct = (/** @type {number} */ n) => `${Math.max(0, Math.min(100, (n / vram.total) * 100)).toFixed(1)}%`;
  const bar = $("vram-bar");
  const parts = vram.llm !== undefined || vram.diffusion !== undefined ? [["llm", vram.llm ?? 0], ["diffusion", vram.diffusion ?? 0]] : [["used", vram.used]];
  bar.replaceChildren(...parts.map(([kind, n]) => h("span", { class: `seg ${kind}`, style: `width:${pct(Number(n))}` })));
  bar.setAttribute("aria-label", `VRAM: ${gb(vram.used)} used of ${gb(vram.total)}`);
  $("vram-text").textContent = `${gb(vram.used)} used, ${gb(vram.total - vram.used)} free of ${gb(vram.total)}`;
}

function renderQueue() {
  const list = $("queue");
  list.replaceChildren(
    ...state.queue.map((/** @type {any} */ entry) =>
      h("li", { "data-since": entry.since }, h("strong", {}, `#${entry.position}`), ` ${entry.phase === "diffusion" ? "image" : "LLM"}: ${short(entry.label, 70)} `, h("span", { class: "small waited" }, waited(entry.since))),
    ),
  );
  $("queue-empty").hidden = state.queue.length > 0;
}

// ------------------------------------------------------------------ the timeline

const SVG = "http://www.w3.org/2000/svg";
/**
 * @param {string} tag
 * @param {Record<string, string | number>} attrs
 * @param {...Node} children
 */
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  el.append(...children);
  return el;
}

/**
 * The last 15 minutes at most, two lanes. Until there are 15 minutes of history the window
 * starts a little before the oldest span (a minute at least), so a fresh box's first swaps
 * are not slivers.
 */
function renderTimeline() {
  const width = 600;
  const lanes = { llm: 18, diffusion: 62 };
  const now = Date.now();
  const oldest = Math.min(now, ...[...state.spans.values()].map((span) => span.start));
  const windowMs = Math.min(WINDOW_MS, Math.max(60_000, (now - oldest) * 1.1));
  const from = now - windowMs;
  const x = (/** @type {number} */ t) => ((Math.max(t, from) - from) / windowMs) * width;
  const ticks = [];
  const step = windowMs > 5 * 60_000 ? 5 * 60_000 : windowMs > 2 * 60_000 ? 60_000 : 15_000;
  for (let ago = Math.floor(windowMs / step) * step; ago >= 0; ago -= step) {
    const tx = x(now - ago);
    const label = ago === 0 ? "now" : ago >= 60_000 ? `-${ago / 60_000}m` : `-${ago / 1000}s`;
    ticks.push(svg("line", { x1: tx, x2: tx, y1: 10, y2: 96, class: "tick" }), svg("text", { x: Math.min(tx + 2, width - 24), y: 106, class: "tick-label" }, document.createTextNode(label)));
  }
  const bars = [];
  for (const span of state.spans.values()) {
    const end = span.end ?? now;
    if (end < from) continue;
    const x1 = x(span.start);
    const w = Math.max(x(end) - x1, 2);
    const title = `${span.kind.replace("_", " ")}: ${span.label} (${duration(end - span.start)}${span.end ? "" : ", ongoing"}${span.outcome ? `, ${span.outcome}` : ""})`;
    const y = lanes[/** @type {"llm" | "diffusion"} */ (span.lane)] ?? lanes.llm;
    const inner = span.kind === "llm_call" ? { y: y + 8, height: 12 } : { y: y + 2, height: 24 };
    bars.push(svg("rect", { x: x1, width: w, ...inner, rx: 2, class: `span ${span.kind}${span.outcome ? ` ${span.outcome}` : ""}` }, svg("title", {}, document.createTextNode(title))));
  }
  const chart = svg(
    "svg",
    { viewBox: `0 0 ${width} 110`, role: "img", "aria-label": `GPU timeline of the last ${duration(windowMs)}: ${state.spans.size} spans`, preserveAspectRatio: "none" },
    svg("text", { x: 2, y: 14, class: "lane-label" }, document.createTextNode("LLM")),
    svg("text", { x: 2, y: 58, class: "lane-label" }, document.createTextNode("Diffusion")),
    ...ticks,
    ...bars,
  );
  $("timeline").replaceChildren(chart);
}

// ------------------------------------------------------------------ the clock

function renderAll() {
  renderNow();
  renderTimeline();
  renderJobs();
}

/** Once a second, locally: the timeline moves on, the waits count up. No request is made. */
function tick() {
  for (const el of document.querySelectorAll("#queue li")) {
    const since = Number(/** @type {HTMLElement} */ (el).dataset.since);
    const span = el.querySelector(".waited");
    if (span) span.textContent = waited(since);
  }
  renderTimeline();
}

// ------------------------------------------------------------------ words

/** @param {number} since */
function waited(since) {
  return `waiting ${duration(Date.now() - since)}`;
}

/** @param {number} ms */
function duration(ms) {
  const s = Math.max(0, ms) / 1000;
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 120) return `${Math.round(s)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

/** @param {number | undefined} bytes */
function gb(bytes) {
  if (!bytes) return "?";
  return bytes >= 1024 ** 3 ? `${(bytes / 1024 ** 3).toFixed(1)} GB` : `${Math.round(bytes / 1024 ** 2)} MB`;
}

/**
 * @param {string} text
 * @param {number} n
 */
function short(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

init();
