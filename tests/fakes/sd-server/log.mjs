// @ts-check
/**
 * How sd-server puts its log lines on its streams (examples/common/log.cpp log_print):
 * `fprintf(stream, "[%-5s] ", level); fputs(message, stream); fflush(stream);`
 *
 *  - stdout is a pipe, so it is fully buffered: the tag and the message leave in ONE write(2)
 *    at the fflush;
 *  - stderr is unbuffered: the tag and the message are TWO writes, so a reader can see a chunk
 *    that ends right after `[ERROR] ` (fixtures/sd-server/serve-missing-model shows it).
 *
 * Progress bars are one write each (printf + fflush(stdout)). Everything is a synchronous
 * write on fd 1/2 (tests/fakes/sd-cli/output.mjs writeChunk), so the order between the two
 * streams is program order. Once the process is dying (`silence()`), nothing is written.
 */
import { Logger, TAG_COLORS, writeChunk } from "../sd-cli/output.mjs";

let silenced = false;
/** Stop all output (the process is being torn down by a signal). */
export function silence() {
  silenced = true;
}

/** One write(2), unless the process is dying. @param {1 | 2} fd @param {string | Uint8Array} data */
export function out(fd, data) {
  if (!silenced) writeChunk(fd, data);
}

/** sd-cli's Logger (the same LOG_ macros and levels), writing the way sd-server's log_print does. */
export class ServerLogger extends Logger {
  /**
   * LOG_xxx: `[LEVEL] file:LINE - message\n` (`%s:%-4d - `); ERROR goes to stderr.
   * @param {"DEBUG" | "INFO" | "WARN" | "ERROR"} level @param {string} file @param {number} line @param {string} msg
   */
  log(level, file, line, msg) {
    if (level === "DEBUG" && !this.verbose) return;
    const tag = this.color ? `\x1b[${TAG_COLORS[level]};1m[${level.padEnd(5)}]\x1b[0m ` : `[${level.padEnd(5)}] `;
    const body = `${file}:${String(line).padEnd(4)} - ${msg}`;
    const text = body.endsWith("\n") ? body : `${body}\n`;
    if (level === "ERROR") {
      out(2, tag);
      out(2, text);
    } else {
      out(1, tag + text);
    }
  }

  /** A line that is not a LOG_ macro but goes through the same callback (ggml's own errors). @param {string} msg */
  ggmlError(msg) {
    out(2, this.color ? "\x1b[31;1m[ERROR]\x1b[0m " : "[ERROR] ");
    out(2, msg);
  }
}
