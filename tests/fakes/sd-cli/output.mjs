// @ts-check
/**
 * How sd-cli puts bytes on its streams. Every function here ends in one write(2) per C-level
 * fflush, so a pipe reader sees the same chunk boundaries the real program produces:
 *
 *  - a log line is two writes, the tag and then the message (log_print: fprintf tag; fflush;
 *    fputs message; fflush), to stdout, or to stderr for ERROR;
 *  - a progress bar redraw is one write, `\r  |<50 cells>| i/n - <speed>\x1b[K`, plus `\n` in
 *    the same write on the last step;
 *  - usage text goes through std::cout and reaches the pipe in 4 KiB stdio blocks.
 *
 * Writes are synchronous (fs.writeSync on fd 1/2, never process.stdout) so ordering between the
 * two streams and between writes and the files the program writes is exactly program order.
 */
import fs from "node:fs";

/**
 * Called when the reader of a stream went away (EPIPE). Set by the program.
 * @type {() => void}
 */
let onBrokenPipe = () => {
  process.exit(141);
};

/** @param {() => void} handler */
export function setBrokenPipeHandler(handler) {
  onBrokenPipe = handler;
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** Block the thread for `ms` milliseconds (used only to wait out a full pipe). @param {number} ms */
export function sleepSync(ms) {
  Atomics.wait(sleeper, 0, 0, ms);
}

/**
 * One write(2) of `data` to fd 1 (stdout) or 2 (stderr). A full non-blocking pipe (EAGAIN) is
 * waited out, as a blocking write would.
 * @param {1 | 2} fd @param {string | Uint8Array} data
 */
export function writeChunk(fd, data) {
  const buf = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(fd, buf, off, buf.length - off);
    } catch (err) {
      const code = /** @type {NodeJS.ErrnoException} */ (err).code;
      if (code === "EAGAIN") {
        sleepSync(1);
        continue;
      }
      if (code === "EPIPE") {
        onBrokenPipe();
        return;
      }
      throw err;
    }
  }
}

/** Text written through C stdio to a pipe: flushed in 4096-byte blocks. @param {1 | 2} fd @param {string} text */
export function writeBuffered(fd, text) {
  const buf = Buffer.from(text, "utf8");
  for (let off = 0; off < buf.length; off += 4096) writeChunk(fd, buf.subarray(off, off + 4096));
}

/** @typedef {"DEBUG" | "INFO" | "WARN" | "ERROR"} LogLevel */

/** The ANSI colour of each level's tag with --color (log.cpp). */
export const TAG_COLORS = { DEBUG: 37, INFO: 34, WARN: 35, ERROR: 31 };

export class Logger {
  /** @param {{ verbose: boolean, color: boolean }} opts */
  constructor(opts) {
    this.verbose = opts.verbose;
    this.color = opts.color;
  }

  /**
   * sd.cpp's LOG_xxx: `[LEVEL] file:LINE - message\n` (`%s:%-4d - `), ERROR to stderr.
   * @param {LogLevel} level @param {string} file @param {number} line @param {string} msg
   */
  log(level, file, line, msg) {
    if (level === "DEBUG" && !this.verbose) return;
    const fd = level === "ERROR" ? 2 : 1;
    const padded = level.padEnd(5);
    const tag = this.color ? `\x1b[${TAG_COLORS[level]};1m[${padded}]\x1b[0m ` : `[${padded}] `;
    const body = `${file}:${String(line).padEnd(4)} - ${msg}`;
    writeChunk(fd, tag);
    writeChunk(fd, body.endsWith("\n") ? body : `${body}\n`);
  }

  /** @param {string} file @param {number} line @param {string} msg */
  info(file, line, msg) {
    this.log("INFO", file, line, msg);
  }
  /** @param {string} file @param {number} line @param {string} msg */
  warn(file, line, msg) {
    this.log("WARN", file, line, msg);
  }
  /** @param {string} file @param {number} line @param {string} msg */
  error(file, line, msg) {
    this.log("ERROR", file, line, msg);
  }
  /** @param {string} file @param {number} line @param {string} msg */
  debug(file, line, msg) {
    this.log("DEBUG", file, line, msg);
  }
}

/**
 * Option errors as both programs print them: a raw line straight to stderr, else a LOG_ERROR.
 * @param {import("./options.mjs").ErrorLine[]} errors @param {Logger} log
 */
export function printErrors(errors, log) {
  for (const e of errors) {
    if (e.raw) writeChunk(2, e.msg);
    else log.error(e.file, e.line, e.msg);
  }
}

/** printf("%.2f") */
export const f2 = (/** @type {number} */ x) => x.toFixed(2);

/**
 * pretty_progress: the sampling / VAE tile bar. `>` marks the current cell (except in the last
 * cell); a step faster than a second is shown as it/s. Step 0 prints nothing (returns "").
 * @param {number} step @param {number} steps @param {number} secondsPerStep
 */
export function samplingBar(step, steps, secondsPerStep) {
  if (step === 0) return "";
  const current = Math.trunc((step * 50) / steps);
  let cells = "";
  for (let i = 0; i < 50; i++) {
    if (i > current) cells += " ";
    else if (i === current && i !== 49) cells += ">";
    else cells += "=";
  }
  const speed =
    secondsPerStep > 1
      ? `${f2(secondsPerStep)}s/it`
      : `${f2(secondsPerStep === 0 ? 0 : 1 / secondsPerStep)}it/s`;
  return `\r  |${cells}| ${step}/${steps} - ${speed}\x1b[K${step === steps ? "\n" : ""}`;
}

/**
 * The tensor loading bar: `#` cells up to and including the current one, speed in MB/s or GB/s.
 * @param {number} done @param {number} total @param {number} bytesPerSecond
 */
export function loadingBar(done, total, bytesPerSecond) {
  const current = Math.trunc((done * 50) / total);
  let cells = "";
  for (let i = 0; i < 50; i++) cells += i <= current ? "#" : " ";
  const mb = bytesPerSecond / (1024 * 1024);
  const speed = mb >= 1024 ? `${f2(mb / 1024)}GB/s` : `${f2(mb)}MB/s`;
  return `\r  |${cells}| ${done}/${total} - ${speed}\x1b[K${done === total ? "\n" : ""}`;
}
