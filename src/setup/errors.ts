/**
 * Typed failures of a download. Every one names the URL; the ones that leave a `.part`
 * behind (interrupted, aborted) say so, because running the same command again resumes it.
 */

export class DownloadError extends Error {
  constructor(
    message: string,
    readonly url: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "DownloadError";
  }
}

/** The server answered with a status that is not a file (404, 401, 500...). */
export class HttpStatusError extends DownloadError {
  constructor(
    url: string,
    readonly status: number,
    readonly statusText: string,
    /** Where the request ended up after redirects. */
    readonly finalUrl: string = url,
  ) {
    super(
      `GET ${url} failed: HTTP ${status}${statusText ? ` ${statusText}` : ""}` +
        (finalUrl !== url ? ` (redirected to ${finalUrl})` : ""),
      url,
    );
    this.name = "HttpStatusError";
  }
}

/** The file arrived whole but is not the expected one; nothing is kept. */
export class ChecksumMismatchError extends DownloadError {
  constructor(
    url: string,
    readonly file: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`${url}: sha256 mismatch for ${file}: expected ${expected}, got ${actual} (the download was deleted)`, url);
    this.name = "ChecksumMismatchError";
  }
}

/** The file (or what the server announced) is not the expected size; nothing is kept. */
export class SizeMismatchError extends DownloadError {
  constructor(
    url: string,
    readonly file: string,
    readonly expected: number,
    readonly actual: number,
  ) {
    super(`${url}: expected ${expected} bytes for ${file}, got ${actual} (the download was deleted)`, url);
    this.name = "SizeMismatchError";
  }
}

/** No answer at all (DNS, refused connection, TLS...). */
export class DownloadNetworkError extends DownloadError {
  constructor(url: string, cause: unknown) {
    super(`GET ${url} failed: ${describeCause(cause)}`, url, { cause });
    this.name = "DownloadNetworkError";
  }
}

/** The connection broke in the middle of the body; the `.part` is kept for a resume. */
export class DownloadInterruptedError extends DownloadError {
  constructor(
    url: string,
    readonly partPath: string,
    readonly received: number,
    readonly total: number | undefined,
    cause?: unknown,
  ) {
    super(
      `${url}: the connection broke after ${received}${total !== undefined ? ` of ${total}` : ""} bytes` +
        (cause ? ` (${describeCause(cause)})` : "") +
        `; the partial file ${partPath} is kept: run again to resume`,
      url,
      { cause },
    );
    this.name = "DownloadInterruptedError";
  }
}

/** The caller's AbortSignal fired; the `.part` is kept for a resume. */
export class DownloadAbortedError extends DownloadError {
  constructor(
    url: string,
    readonly partPath: string,
    readonly received: number,
    cause?: unknown,
  ) {
    super(`${url}: download stopped after ${received} bytes; ${partPath} is kept for a later resume`, url, { cause });
    this.name = "DownloadAbortedError";
  }
}

/** "fetch failed" says nothing: name the underlying reason (ECONNREFUSED, ENOTFOUND...). */
export function describeCause(err: unknown): string {
  const parts: string[] = [];
  let current: unknown = err;
  for (let depth = 0; current && depth < 4; depth++) {
    if (current instanceof Error) {
      const code = (current as { code?: unknown }).code;
      parts.push(typeof code === "string" && !current.message.includes(code) ? `${current.message} (${code})` : current.message);
      current = current.cause;
    } else {
      parts.push(String(current));
      break;
    }
  }
  return parts.filter((p, i) => p && parts.indexOf(p) === i).join(": ") || "unknown error";
}
