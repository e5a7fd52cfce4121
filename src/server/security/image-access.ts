import type { MiddlewareHandler } from "hono";
import { apiKeyAuth, apiKeyCheck } from "../auth.js";
import { ApiError } from "../errors.js";
import { imagePath } from "../image-links.js";
import { expiryParam, signatureParam, type ImageUrlSigner } from "./signed-image-urls.js";

/**
 * Who may load `/images/<file>`: anyone when API_KEY is unset; with it, a request with the
 * key, or one whose link was signed by this server and has not expired (the links answers
 * carry; see signed-image-urls.ts). An expired link is 403 `image_url_expired` (asking for
 * the job again, GET /v1/jobs/<id> with the key, gives fresh links); a signature that does
 * not match is 403 `invalid_image_signature`; no key and no signature is the usual 401.
 */
export function imageAccess(apiKey: string | undefined, signer: ImageUrlSigner | undefined): MiddlewareHandler {
  const auth = apiKeyAuth(apiKey);
  const key = apiKeyCheck(apiKey);
  return async (c, next) => {
    const exp = c.req.query(expiryParam);
    const sig = c.req.query(signatureParam);
    const signed = exp !== undefined || sig !== undefined;
    // The key, when sent, decides; a link's signature counts only without it.
    if (!signed || signer === undefined || key(c) !== "missing") return auth(c, next);
    const pathname = canonicalImagePath(new URL(c.req.url).pathname);
    const verdict = pathname === undefined ? "bad_signature" : signer.check(pathname, exp ?? "", sig ?? "");
    if (verdict === "expired") {
      throw new ApiError(403, "This image link has expired (IMAGE_URL_TTL_S): ask for the job again for a fresh one, or send the API key", {
        type: "invalid_request_error",
        code: "image_url_expired",
        retryable: false,
      });
    }
    if (verdict === "bad_signature") {
      throw new ApiError(403, "This image link's signature is not valid", { type: "invalid_request_error", code: "invalid_image_signature", retryable: false });
    }
    return next();
  };
}

/** `/images/<name>` as links spell it (the name percent-encoded once), whatever escapes the client used. */
function canonicalImagePath(rawPathname: string): string | undefined {
  const prefix = "/images/";
  if (!rawPathname.startsWith(prefix)) return undefined;
  const segment = rawPathname.slice(prefix.length);
  if (segment === "" || segment.includes("/")) return undefined;
  try {
    const name = decodeURIComponent(segment);
    return name.includes("/") ? undefined : imagePath(name);
  } catch {
    return undefined;
  }
}
