import type { FC } from "hono/jsx";

/**
 * The operator page's HTML (GET /, /ui): the panels as empty, labelled places, filled by
 * its one script (assets/page.js) from the API and the /v1/events stream. The shell itself
 * says nothing about the box (it is served without the key), so it is the same for every
 * visitor and caches by the assets' hashes.
 */
export interface OperatorPageProps {
  scriptUrl: string;
  styleUrl: string;
}

const sizes = ["512x512", "768x768", "1024x1024", "512x768", "768x512", "832x1216", "1216x832", "256x256", "64x64"];

export const OperatorPage: FC<OperatorPageProps> = ({ scriptUrl, styleUrl }) => (
  <html lang="en">
    <head>
      <meta charset="utf-8" />
      <meta name="viewport" content="width=device-width, initial-scale=1" />
      <meta name="color-scheme" content="light dark" />
      <title>DiffuGen</title>
      <link rel="icon" href="data:," />
      <link rel="stylesheet" href={styleUrl} />
      <script type="module" src={scriptUrl}></script>
    </head>
    <body>
      <header class="top">
        <h1>DiffuGen</h1>
        <span id="conn" class="conn" role="status" data-state="off">
          not connected
        </span>
        <button id="logout" type="button" class="quiet" hidden>
          Forget key
        </button>
      </header>

      <section id="login" class="panel login" aria-labelledby="login-title" hidden>
        <h2 id="login-title">This DiffuGen needs its API key</h2>
        <form id="login-form">
          <input type="text" name="username" autocomplete="username" value="diffugen" hidden />
          <label for="login-key">API key</label>
          <input id="login-key" name="key" type="password" autocomplete="current-password" required />
          <button type="submit">Open</button>
          <p id="login-error" class="error" role="alert"></p>
        </form>
        <p class="hint">The key stays in this tab (session storage) and is sent as a Bearer header.</p>
      </section>

      <main id="app" hidden>
        <section id="now" class="panel now" aria-labelledby="now-title">
          <h2 id="now-title">Now</h2>
          <div id="holder" class="holder" aria-live="polite"></div>
          <p id="llm" class="llm"></p>
          <div id="vram" class="vram" hidden>
            <div class="vram-bar" role="img" id="vram-bar"></div>
            <p id="vram-text" class="small"></p>
          </div>
          <h3>Waiting</h3>
          <ol id="queue" class="queue"></ol>
          <p id="queue-empty" class="small">Nothing waits for the GPU.</p>
        </section>

        <section id="timeline-panel" class="panel timeline" aria-labelledby="timeline-title">
          <h2 id="timeline-title">
            GPU timeline <span class="small">(up to the last 15 minutes)</span>
          </h2>
          <div id="timeline" class="timeline-box"></div>
          <p class="legend small">
            <span class="key unload">unload</span> <span class="key load">load</span> <span class="key llm_call">LLM call</span>{" "}
            <span class="key image_job">image job</span>
          </p>
        </section>

        <section id="draw" class="panel draw" aria-labelledby="draw-title">
          <h2 id="draw-title">Draw</h2>
          <form id="draw-form">
            <label for="draw-prompt">Prompt</label>
            <textarea id="draw-prompt" name="prompt" rows={3} required maxlength={4000}></textarea>
            <div class="fields">
              <label>
                Model
                <select id="draw-model" name="model">
                  <option value="">default</option>
                </select>
              </label>
              <label>
                Size
                <select id="draw-size" name="size">
                  <option value="">default</option>
                  {sizes.map((size) => (
                    <option value={size}>{size.replace("x", "×")}</option>
                  ))}
                </select>
              </label>
              <label>
                Steps
                <input id="draw-steps" name="steps" type="number" min={1} max={150} inputmode="numeric" placeholder="default" />
              </label>
              <label>
                Seed
                <input id="draw-seed" name="seed" type="number" min={-1} inputmode="numeric" placeholder="random" />
              </label>
            </div>
            <label class="check">
              <input id="draw-refine" name="refine" type="checkbox" checked /> Let the LLM refine the prompt
            </label>
            <button id="draw-submit" type="submit">
              Draw
            </button>
            <p id="draw-error" class="error" role="alert"></p>
          </form>
        </section>

        <section id="jobs" class="panel jobs" aria-labelledby="jobs-title">
          <h2 id="jobs-title">Jobs</h2>
          <ul id="job-list" class="job-list"></ul>
          <p id="jobs-empty" class="small">No jobs yet.</p>
        </section>
      </main>

      <dialog id="job-dialog" aria-labelledby="dialog-title">
        <form method="dialog" class="dialog-close">
          <button type="submit" class="quiet" aria-label="Close">
            ✕
          </button>
        </form>
        <h2 id="dialog-title">Job</h2>
        <div id="dialog-images" class="dialog-images"></div>
        <dl id="dialog-facts" class="facts"></dl>
        <h3>Events</h3>
        <ol id="dialog-events" class="events"></ol>
      </dialog>
    </body>
  </html>
);
