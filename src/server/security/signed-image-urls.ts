import { createHmac, timingSafeEqual } from "node:crypto";

/**
 * Signed image links: with API_KEY set, `/images/<file>` needs the key, which a browser
 * loading `![](url)` from a chat, or OpenWebUI showing a `url` answer, cannot send. So the
 * links DiffuGen hands out carry their own proof instead: `?exp=<unix seconds>&sig=<mac>`,
 * an HMAC-SHA256 over the image's path and the expiry. Anyone holding the link sees that one
 * image until `exp`, nothing else, and no link can be made for another file or a later
 * expiry without the key.
 *
 * The MAC key is derived from API_KEY (HMAC of a fixed label), never API_KEY itself, so a
 * signature is no oracle for the key; changing API_KEY voids every link handed out.
 */

export const expiryParam = "exp";
export const signatureParam = "sig";

/** What a signed link's query says, checked. */
export type SignatureCheck = "valid" | "expired" | "bad_signature";

export class ImageUrlSigner {
  readonly #macKey: Buffer;

  constructor(
    apiKey: string,
    /** How long a link works once made. */
    readonly ttlMs: number,
    /** Epoch milliseconds (tests move it). */
    private readonly clock: () => number = Date.now,
  ) {
    this.#macKey = createHmac("sha256", apiKey).update("diffugen/image-url/v1").digest();
  }

  /** The query that makes `pathname` (`/images/<encoded name>`) loadable without the key until now + ttl. */
  query(pathname: string): string {
    const exp = Math.floor((this.clock() + this.ttlMs) / 1000);
    return `${expiryParam}=${exp}&${signatureParam}=${this.#mac(pathname, exp).toString("base64url")}`;
  }

  /** Checks a link's `exp` and `sig` for `pathname`; the signature first, so an expired forgery says so as a forgery. */
  check(pathname: string, exp: string, sig: string): SignatureCheck {
    if (!/^\d{1,12}$/.test(exp) || !/^[A-Za-z0-9_-]{43}$/.test(sig)) return "bad_signature";
    // Compared as text: base64url has spare bits in its last character, and a link has one spelling.
    const expected = Buffer.from(this.#mac(pathname, Number(exp)).toString("base64url"));
    const given = Buffer.from(sig);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return "bad_signature";
    return Number(exp) * 1000 <= this.clock() ? "expired" : "valid";
  }

  #mac(pathname: string, exp: number): Buffer {
    return createHmac("sha256", this.#macKey).update(`${pathname}\n${exp}`).digest();
  }
}
