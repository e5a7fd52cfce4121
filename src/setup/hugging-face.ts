/**
 * Hugging Face specifics of a download, read from the environment:
 *
 *   HF_TOKEN     unset   a Hugging Face access token; sent as `Authorization: Bearer <token>`,
 *                        only to huggingface.co / hf.co (and HF_ENDPOINT's host), never elsewhere.
 *                        Gated repositories (SD3, FLUX.1 dev, BFL's FLUX.1 VAE) need it, from an
 *                        account that accepted the model's licence on its page.
 *   HF_ENDPOINT  unset   a Hugging Face mirror (the variable huggingface_hub reads): URLs under
 *                        https://huggingface.co/ are fetched from there instead.
 */

const hfOrigin = "https://huggingface.co";

export interface HfEnv {
  token: string | undefined;
  endpoint: string | undefined;
}

export function hfEnv(env: NodeJS.ProcessEnv = process.env): HfEnv {
  const token = env.HF_TOKEN?.trim() || undefined;
  const endpoint = env.HF_ENDPOINT?.trim().replace(/\/+$/, "") || undefined;
  return { token, endpoint };
}

/** The URL to fetch: a huggingface.co URL moves to HF_ENDPOINT when that is set. */
export function effectiveUrl(url: string, hf: HfEnv): string {
  if (hf.endpoint && (url === hfOrigin || url.startsWith(`${hfOrigin}/`))) return hf.endpoint + url.slice(hfOrigin.length);
  return url;
}

export function isHuggingFaceUrl(url: string, hf: HfEnv): boolean {
  const host = hostOf(url);
  if (!host) return false;
  if (host === "huggingface.co" || host === "hf.co" || host.endsWith(".huggingface.co") || host.endsWith(".hf.co")) return true;
  return hf.endpoint !== undefined && host === hostOf(hf.endpoint);
}

/** `Authorization: Bearer $HF_TOKEN` for Hugging Face URLs when a token is set; nothing otherwise. */
export function authHeadersFor(url: string, hf: HfEnv): Record<string, string> {
  return hf.token && isHuggingFaceUrl(url, hf) ? { Authorization: `Bearer ${hf.token}` } : {};
}

/** The repository page of a `.../<owner>/<repo>/resolve/<rev>/<file>` URL, where its licence is accepted. */
export function repoPageOf(url: string): string | undefined {
  try {
    const parts = new URL(url).pathname.split("/").filter((p) => p !== "");
    const resolveAt = parts.indexOf("resolve");
    if (resolveAt < 2) return undefined;
    return `${hfOrigin}/${parts.slice(resolveAt - 2, resolveAt).join("/")}`;
  } catch {
    return undefined;
  }
}

/** What to tell the user when Hugging Face answers 401/403. */
export function gatedAdvice(url: string, status: number, hf: HfEnv): string {
  const page = repoPageOf(url) ?? "the model's Hugging Face page";
  if (hf.token) {
    return (
      `HTTP ${status} from ${url} although HF_TOKEN was sent: this repository is gated. ` +
      `Log in to Hugging Face with the token's account, accept the licence on ${page}, ` +
      `and check that the token may read gated repositories (a "read" token, or a fine-grained one with that permission).`
    );
  }
  return (
    `HTTP ${status} from ${url}: this repository is gated on Hugging Face and needs an account.\n` +
    `  1. log in at https://huggingface.co and accept the licence on ${page}\n` +
    `  2. create a read token at https://huggingface.co/settings/tokens\n` +
    `  3. run again with HF_TOKEN=hf_... in the environment (it is sent as "Authorization: Bearer <token>", to Hugging Face only)`
  );
}

function hostOf(url: string): string | undefined {
  try {
    return new URL(url).host.toLowerCase();
  } catch {
    return undefined;
  }
}
