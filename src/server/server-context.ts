import type { DiffugenDeps } from "../../graphs/diffugen/dependencies.js";
import type { GateStatus } from "../gpu/index.js";
import type { JobRunner } from "../jobs/index.js";
import type { Logger } from "../logging/index.js";
import type { ServiceMetrics } from "../metrics/index.js";
import type { GatewayCallObserver } from "./gateway/gateway-observer.js";
import type { ImageUrlSigner } from "./security/signed-image-urls.js";
import type { ServerOptions } from "./server-config.js";

/** What every route module is built from. */
export interface ServerContext {
  deps: DiffugenDeps;
  runner: JobRunner;
  options: ServerOptions;
  /** Unix seconds when the app was built (the `created` of /v1/models entries). */
  startedAt: number;
  /** Counters and histograms behind GET /stats and GET /metrics. */
  metrics: ServiceMetrics;
  /** The structured (JSON lines) log. */
  logger: Logger;
  /** The bypass watchdog watching the scheduler (src/gpu/bypass-watchdog.ts), when bootstrap started one. */
  gate: { status(): GateStatus } | undefined;
  /** Signs image links when API_KEY is set (and IMAGE_URL_TTL_S is not 0); else none. */
  imageSigner: ImageUrlSigner | undefined;
  /** Hears the gateway's gated LLM calls (the operator page's event stream, GET /v1/events). */
  gatewayCalls: GatewayCallObserver;
}

/** Hono's per-request variables. */
export interface AppEnv {
  Variables: {
    /**
     * Aborts when the client goes away before the response is finished. Kept from the
     * original request: middleware may replace `c.req.raw` (bodyLimit re-wraps the body).
     */
    clientSignal: AbortSignal;
    /** Takes one of the client's stream slots (MAX_STREAMS_PER_CLIENT), or throws the 429: see security/stream-slots.ts. */
    claimStream?: () => void;
  };
}
